"""Normalisation layers shared by decoder models."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn


class RMSNorm(nn.Module):
    """Root-mean-square norm as Llama/Mistral/Qwen2 compute it: statistics in float32, ``weight * x.astype(dtype)``.

    x [..., D] -> [..., D]; the parameter is ``weight`` [D] (named as in the PyTorch checkpoint).
    """

    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        h = x.astype(jnp.float32)
        h = h * jnp.reciprocal(jnp.sqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.epsilon))
        return weight.astype(self.dtype) * h.astype(self.dtype)


class OffsetRMSNorm(nn.Module):
    """RMSNorm with a ``(1 + weight)`` gain, as Gemma 1/2/3 compute it: all in float32, cast to ``dtype`` last.

    The weight is stored zero-centred (initialised to zeros, so a fresh norm is the identity gain).
    x [..., D] -> [..., D]; the parameter is ``weight`` [D].
    """

    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.zeros, (x.shape[-1],))
        h = x.astype(jnp.float32)
        h = h * jnp.reciprocal(jnp.sqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.epsilon))
        return (h * (1.0 + weight.astype(jnp.float32))).astype(self.dtype)
