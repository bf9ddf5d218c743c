"""Exports of a study's networks: a JSON record (``record``), ONNX (``onnx``), ml-cvnets (``cvnets``) and timm
(``timm``)."""

from ..model.config import ConfigError


class ExportError(ConfigError):
    """A study or trial that cannot be exported as asked; the message says why (one line)."""
