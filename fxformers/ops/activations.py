"""Activation functions under their Transformers names (``config.hidden_act`` and friends)."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp


def gelu_tanh(x):
    """Tanh approximation of GELU ("gelu_new", "gelu_pytorch_tanh", "gelu_fast" in Transformers)."""
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * jnp.power(x, 3.0))))


def quick_gelu(x):
    return x * jax.nn.sigmoid(1.702 * x)


def mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


ACT2FN: dict[str, Callable] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_accurate": gelu_tanh,
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "mish": mish,
    "linear": lambda x: x,
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable:
    """The activation called ``name`` in Transformers; a clear error for names it does not know."""
    if callable(name):
        return name
    try:
        return ACT2FN[name]
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; supported: {sorted(ACT2FN)}.") from None
