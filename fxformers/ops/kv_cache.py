"""The explicit key/value cache of decoder self-attention, and the masks over it.

A layer's cache is ``{"key": [B, L, K, H], "value": [B, L, K, H]}`` (B batch, L cache slots, K kv heads, H head dim),
written in place with ``lax.dynamic_update_slice``. Slots are positions in the (left-padded) token stream; a
``[B, L]`` 0/1 mask says which slots hold real tokens. Query t of a call that writes at ``cache_index`` sits in slot
``cache_index + t`` and may attend to slots ``s <= cache_index + t`` (and ``s > cache_index + t - window`` with a
sliding window), exactly Transformers' cache-position masks.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def init_layer_cache(batch: int, length: int, kv_heads: int, head_dim: int, dtype) -> dict:
    """Zeros for one layer: {"key", "value"} each [B, L, K, H]."""
    zeros = jnp.zeros((batch, length, kv_heads, head_dim), dtype)
    return {"key": zeros, "value": zeros}


def update_layer_cache(cache: dict, key, value, cache_index) -> dict:
    """Write key/value [B, T, K, H] at slot ``cache_index`` (a traced scalar is fine)."""
    index = jnp.asarray(cache_index, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    start = (zero, index, zero, zero)
    return {
        "key": jax.lax.dynamic_update_slice(cache["key"], key.astype(cache["key"].dtype), start),
        "value": jax.lax.dynamic_update_slice(cache["value"], value.astype(cache["value"].dtype), start),
    }


def decoder_mask(key_mask, query_len: int, cache_index=0, sliding_window: Optional[int] = None):
    """key_mask [B, S] 0/1 over key slots -> bool [B, 1, T, S]: padding AND causal AND (optional) sliding window."""
    q = jnp.arange(query_len)[:, None] + jnp.asarray(cache_index, jnp.int32)  # [T, 1] query slots
    k = jnp.arange(key_mask.shape[1])[None, :]  # [1, S] key slots
    allowed = k <= q
    if sliding_window is not None:
        allowed = allowed & (k > q - sliding_window)
    return key_mask[:, None, None, :].astype(bool) & allowed[None, None]  # [B, 1, T, S]


def positions_from_mask(attention_mask):
    """Position ids of a left-padded batch as Transformers' generate computes them: cumsum(mask) - 1, pads 0."""
    mask = attention_mask.astype(jnp.int32)
    return jnp.where(mask == 1, jnp.cumsum(mask, axis=-1) - 1, 0)
