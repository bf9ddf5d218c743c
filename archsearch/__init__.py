"""archsearch: architecture search and scaling laws for MobileViT over four global factors."""

from .model.config import PRESETS, ArchConfig, ConfigError, preset

__version__ = "0.1.0"
__all__ = ["PRESETS", "ArchConfig", "ConfigError", "__version__", "build_model", "count", "preset"]


def __getattr__(name: str):
    """``build_model`` and ``count`` load on first use (PEP 562), so importing the package loads no torch."""
    if name == "build_model":
        # local: torch loads only when a model is built
        from .model.generator import build_model

        return build_model
    if name == "count":
        # local: fvcore and torch load only when something is counted
        from .model.cost import count

        return count
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
