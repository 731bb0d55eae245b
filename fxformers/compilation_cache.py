"""A persistent XLA compilation cache, on by default: a second process reuses the first one's compiled programs.

The folder is ``$HF_HOME/fxformers/xla`` (``~/.cache/huggingface/fxformers/xla``), beside the Hugging Face hub
cache. ``FXFORMERS_COMPILATION_CACHE=/some/folder`` moves it; ``FXFORMERS_COMPILATION_CACHE=0`` turns it off. A cache
folder configured through JAX itself (``jax.config.update("jax_compilation_cache_dir", ...)`` or
``JAX_COMPILATION_CACHE_DIR``) is left as it is. It is set up when the first model is built, before anything compiles.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

_OFF = ("0", "false", "off", "no", "none", "")
# Programs that compile faster than this are not written (a disk read would not be faster than compiling them).
MIN_COMPILE_TIME_SECS = 0.2
_state = {"done": False, "folder": None}


def default_cache_dir() -> Path:
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "fxformers" / "xla"


def enable_compilation_cache() -> Optional[str]:
    """Turn the persistent cache on (once per process); returns the folder in use, or None when it is off."""
    if _state["done"]:
        return _state["folder"]
    _state["done"] = True
    import jax

    setting = os.environ.get("FXFORMERS_COMPILATION_CACHE")
    if setting is not None and setting.strip().lower() in _OFF:
        return None
    if jax.config.jax_compilation_cache_dir:  # the user chose one through JAX
        _state["folder"] = jax.config.jax_compilation_cache_dir
        return _state["folder"]
    folder = Path(setting).expanduser() if setting else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        logger.warning("Cannot create the XLA compilation cache folder %s (%s); compiling without a persistent "
                       "cache. Set FXFORMERS_COMPILATION_CACHE to a writable folder, or to 0.", folder, err)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default: also keep sub-second programs
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    try:  # a compilation before this point initialised JAX's cache as disabled: let it read the new setting
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
    _state["folder"] = str(folder)
    logger.debug("XLA compilation cache: %s", folder)
    return _state["folder"]
