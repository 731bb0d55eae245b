"""MBartConfig: BART's config.json fields (the architecture differs, not the config)."""

from ..bart.configuration import MBartConfig

__all__ = ["MBartConfig"]
