"""archsearch: architecture search and scaling laws for MobileViT over four global factors."""

from .model.config import PRESETS, ArchConfig, ConfigError, preset
from .model.generator import build_model

__version__ = "0.1.0"
__all__ = ["PRESETS", "ArchConfig", "ConfigError", "__version__", "build_model", "count", "preset"]


def count(config: ArchConfig, method: str = "fvcore"):
    """Params, MACs and the per-stage breakdown of ``config`` (``method``: "fvcore" or "closed_form")."""
    from .model.cost import count as _count

    return _count(config, method=method)
