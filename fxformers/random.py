"""The library-held random key: fresh randomness per call (sampling, dropout), reproducible after ``set_seed``.

Transformers draws from PyTorch's global generator; fxformers keeps one ``jax.random`` key and splits it on every
draw, so two ``generate(do_sample=True)`` calls differ, and ``set_seed(n)`` makes a whole script repeat exactly.
Explicit keys (``prng_key=``, ``dropout_rng=``) bypass it.
"""

from __future__ import annotations

import random
import threading

import jax
import numpy as np

_lock = threading.Lock()
_state: dict = {"seed": 0, "key": None}


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, numpy's global generator and fxformers' key (as ``transformers.set_seed`` seeds
    Python, numpy and torch). ``deterministic`` is accepted for compatibility: XLA on CPU is deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    with _lock:
        _state["seed"], _state["key"] = int(seed), None


def next_key() -> jax.Array:
    """A fresh key; the held key advances. Without ``set_seed`` the sequence starts from seed 0."""
    with _lock:
        key = _state["key"] if _state["key"] is not None else jax.random.PRNGKey(_state["seed"])
        _state["key"], sub = jax.random.split(key)
    return sub
