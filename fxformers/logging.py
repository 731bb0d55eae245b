"""``fxformers.logging``: Transformers' verbosity helpers over the ``fxformers`` library logger.

As in Transformers, the library logger gets its own stderr handler (on first use of these helpers) and the
default level is WARNING; ``FXFORMERS_VERBOSITY`` (or ``TRANSFORMERS_VERBOSITY``) = debug/info/warning/error/critical
sets it from the environment.
"""

from __future__ import annotations

import logging as _logging
import os
import sys
import threading
from typing import Optional

CRITICAL, ERROR, WARNING, INFO, DEBUG = _logging.CRITICAL, _logging.ERROR, _logging.WARNING, _logging.INFO, _logging.DEBUG
WARN, FATAL, NOTSET = _logging.WARN, _logging.FATAL, _logging.NOTSET

_LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}
_lock = threading.Lock()
_handler: Optional[_logging.Handler] = None
_progress_bar_enabled = True


def _library_logger() -> _logging.Logger:
    return _logging.getLogger("fxformers")


def _default_level() -> int:
    name = os.getenv("FXFORMERS_VERBOSITY") or os.getenv("TRANSFORMERS_VERBOSITY")
    if name is None:
        return WARNING
    if name.lower() not in _LEVELS:
        raise ValueError(f"FXFORMERS_VERBOSITY={name!r}: use one of {', '.join(_LEVELS)}.")
    return _LEVELS[name.lower()]


def _configure() -> None:
    global _handler
    with _lock:
        if _handler is not None:
            return
        _handler = _logging.StreamHandler(sys.stderr)
        _handler.flush = sys.stderr.flush
        root = _library_logger()
        root.addHandler(_handler)
        root.setLevel(_default_level())
        root.propagate = False


def get_logger(name: Optional[str] = None) -> _logging.Logger:
    """A logger under the library's (``fxformers`` when no name is given)."""
    _configure()
    return _logging.getLogger(name or "fxformers")


def get_verbosity() -> int:
    _configure()
    return _library_logger().getEffectiveLevel()


def set_verbosity(verbosity: int) -> None:
    """Set the library's level (``fxformers.logging.INFO`` ...)."""
    _configure()
    _library_logger().setLevel(verbosity)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def disable_default_handler() -> None:
    _configure()
    _library_logger().removeHandler(_handler)


def enable_default_handler() -> None:
    _configure()
    _library_logger().addHandler(_handler)


def add_handler(handler: _logging.Handler) -> None:
    _configure()
    _library_logger().addHandler(handler)


def remove_handler(handler: _logging.Handler) -> None:
    _configure()
    _library_logger().removeHandler(handler)


def disable_propagation() -> None:
    _configure()
    _library_logger().propagate = False


def enable_propagation() -> None:
    """Let records reach the root logger too (the library handler stays; remove it to avoid double lines)."""
    _configure()
    _library_logger().propagate = True


def enable_explicit_format() -> None:
    _configure()
    _handler.setFormatter(_logging.Formatter("[%(levelname)s|%(filename)s:%(lineno)s] %(asctime)s >> %(message)s"))


def reset_format() -> None:
    _configure()
    _handler.setFormatter(None)


def is_progress_bar_enabled() -> bool:
    return _progress_bar_enabled


def enable_progress_bar() -> None:
    global _progress_bar_enabled
    _progress_bar_enabled = True


def disable_progress_bar() -> None:
    global _progress_bar_enabled
    _progress_bar_enabled = False
