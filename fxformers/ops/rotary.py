"""Rotary position embeddings (RoPE) with Transformers' parameterisations.

``rope_parameters(config)`` reads both spellings a checkpoint can carry — Transformers 5's ``rope_parameters``
dict and the older ``rope_theta`` + ``rope_scaling`` — and ``inverse_frequencies`` implements the ``default``,
``linear``, ``dynamic``, ``llama3`` and ``longrope`` types. Rotation uses the "rotate half" layout of Llama checkpoints
(the two halves of the head dim pair up, not interleaved neighbours).

Shapes: B batch, T length, N heads, H head dim (rotary dim R <= H, R even).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "longrope")


def rope_parameters(config: Any) -> dict:
    """The rope settings as one dict with ``rope_type`` and ``rope_theta`` filled in (either config spelling)."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = params.get("rope_type", params.get("type")) or "default"
    params["rope_type"] = rope_type
    if params.get("rope_theta") is None:
        params["rope_theta"] = getattr(config, "rope_theta", None) or 10000.0
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise NotImplementedError(
            f"rope_type {rope_type!r} is not supported; fxformers implements {', '.join(SUPPORTED_ROPE_TYPES)}."
        )
    if rope_type in ("linear", "dynamic", "llama3") and params.get("factor") is None:
        raise ValueError(f"rope_type {rope_type!r} needs a 'factor' in rope_parameters/rope_scaling.")
    if rope_type == "longrope":
        # Phi-3 keeps the pretraining length outside the rope dict, and Transformers gives that field priority
        original = getattr(config, "original_max_position_embeddings", None)
        if original is not None:
            params["original_max_position_embeddings"] = original
        params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
        for key in ("short_factor", "long_factor"):
            if params.get(key) is None:
                raise ValueError(f"rope_type 'longrope' needs {key!r} in rope_parameters/rope_scaling.")
    if rope_type == "llama3":
        params.setdefault(
            "original_max_position_embeddings",
            getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings,
        )
        for key in ("low_freq_factor", "high_freq_factor"):
            if params.get(key) is None:
                raise ValueError(f"rope_type 'llama3' needs {key!r} in rope_parameters/rope_scaling.")
    return params


def rotary_dim(config: Any, head_dim: int) -> int:
    factor = rope_parameters(config).get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None)) or 1.0
    return int(head_dim * factor)


def base_inverse_frequencies(theta: float, dim: int) -> np.ndarray:
    return 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))


def inverse_frequencies(config: Any, dim: int) -> np.ndarray:
    """[R/2] float32 inverse frequencies for the static rope types (``dynamic`` returns its unscaled base)."""
    p = rope_parameters(config)
    inv = base_inverse_frequencies(p["rope_theta"], dim)
    if p["rope_type"] == "linear":
        return (inv / p["factor"]).astype(np.float32)
    if p["rope_type"] == "longrope":
        return longrope_frequencies(config, dim)[0]  # the short factors; cos_sin switches to the long ones
    if p["rope_type"] == "llama3":
        factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
        old = p["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    return inv.astype(np.float32)


def longrope_frequencies(config: Any, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """LongRoPE (Phi-3): (short [R/2], long [R/2] inverse frequencies, attention factor scaling cos and sin).

    Each frequency is divided by its own rescale factor: ``short_factor`` for sequences up to
    ``original_max_position_embeddings``, ``long_factor`` beyond. The attention factor defaults to
    ``sqrt(1 + log(factor) / log(original))`` with ``factor = max_position_embeddings / original`` unless given.
    """
    p = rope_parameters(config)
    original = p["original_max_position_embeddings"]
    factor = p.get("factor") or config.max_position_embeddings / original
    attention = p.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    powers = p["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim)  # float32 [R/2]
    for key in ("short_factor", "long_factor"):
        if len(p[key]) != dim // 2:
            raise ValueError(f"rope {key} has {len(p[key])} entries; the rotary dim {dim} needs {dim // 2}.")
    short = 1.0 / (np.asarray(p["short_factor"], np.float32) * powers)
    long = 1.0 / (np.asarray(p["long_factor"], np.float32) * powers)
    return short.astype(np.float32), long.astype(np.float32), float(attention)


def cos_sin(config: Any, dim: int, position_ids, dtype) -> tuple:
    """position_ids [B, T] -> (cos, sin) each [B, T, R] in ``dtype`` (computed in float32, as Transformers does)."""
    p = rope_parameters(config)
    pos = position_ids.astype(jnp.float32)
    scale = 1.0
    if p["rope_type"] == "longrope":
        # Transformers switches to the long factors when the longest position of this call passes the original
        # pretraining length (longrope_frequency_update: seq_len = max(position_ids) + 1)
        short, long, scale = longrope_frequencies(config, dim)
        seq_len = jnp.max(position_ids) + 1
        inv = jnp.where(seq_len > p["original_max_position_embeddings"], jnp.asarray(long), jnp.asarray(short))
    elif p["rope_type"] == "dynamic":
        # NTK scaling from the longest position in this call (Transformers' dynamic_rope_update; stateless here).
        max_pos = config.max_position_embeddings
        seq_len = jnp.maximum(jnp.max(position_ids) + 1, max_pos).astype(jnp.float32)
        base = p["rope_theta"] * ((p["factor"] * seq_len / max_pos) - (p["factor"] - 1)) ** (dim / (dim - 2))
        exponents = jnp.arange(0, dim, 2, dtype=jnp.float32) / dim
        inv = 1.0 / (base**exponents)
    else:
        inv = jnp.asarray(inverse_frequencies(config, dim))
    freqs = pos[..., None] * inv  # [B, T, R/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)  # [B, T, R]
    if scale != 1.0:
        return (jnp.cos(emb) * scale).astype(dtype), (jnp.sin(emb) * scale).astype(dtype)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x, cos, sin):
    """x [B, T, N, H]; cos/sin [B, T, R]: rotate the first R dims of every head, pass the rest through."""
    r = cos.shape[-1]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [B, T, 1, R]
    if r == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rot, rest = x[..., :r], x[..., r:]
    return jnp.concatenate([rot * cos + rotate_half(rot) * sin, rest], axis=-1)
