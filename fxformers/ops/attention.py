"""The one attention op every model uses.

Shapes: B batch, T query length, S key length, N query heads, K key/value heads (N % K == 0), H head dim.
Without attention weights or dropout it calls ``jax.nn.dot_product_attention`` (cuDNN flash attention on GPU where it
applies, XLA elsewhere); otherwise it runs the explicit einsum path. Scores and softmax are float32 in both.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def dot_product_attention(
    query,
    key,
    value,
    *,
    mask=None,
    bias=None,
    scale: Optional[float] = None,
    softcap: Optional[float] = None,
    dropout_rate: float = 0.0,
    dropout_rng=None,
    return_weights: bool = False,
):
    """Multi-head attention.

    query [B, T, N, H], key/value [B, S, K, H], mask bool broadcastable to [B, N, T, S] (True = attend),
    bias float broadcastable to [B, N, T, S] added to the scores (T5 relative positions).
    softcap: if set, scores become ``softcap * tanh(scores / softcap)`` before masking (Gemma 2's attention-logit
    soft-capping; it needs the explicit path, as ``jax.nn.dot_product_attention`` has no such option).
    Returns (output [B, T, N, H], weights [B, N, T, S] float32 or None).
    """
    num_heads, kv_heads = query.shape[2], key.shape[2]
    if num_heads % kv_heads:
        raise ValueError(f"{num_heads} query heads cannot share {kv_heads} key/value heads evenly.")
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    use_dropout = dropout_rate > 0.0 and dropout_rng is not None
    if not (return_weights or use_dropout or softcap):
        if bias is not None:
            bias = jnp.broadcast_to(bias, (query.shape[0], num_heads, query.shape[1], key.shape[1])).astype(query.dtype)
        if mask is not None:
            mask = jnp.broadcast_to(mask, (query.shape[0], num_heads, query.shape[1], key.shape[1]))
        out = jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale)
        return out, None
    if kv_heads != num_heads:  # grouped-query attention: each kv head serves num_heads // kv_heads query heads
        key = jnp.repeat(key, num_heads // kv_heads, axis=2)
        value = jnp.repeat(value, num_heads // kv_heads, axis=2)
    scores = jnp.einsum("btnh,bsnh->bnts", query, key, preferred_element_type=jnp.float32) * scale  # [B, N, T, S]
    if softcap:
        scores = jnp.tanh(scores / softcap) * softcap
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    probs = weights
    if use_dropout:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    out = jnp.einsum("bnts,bsnh->btnh", probs.astype(value.dtype), value)  # [B, T, N, H]
    return out, (weights if return_weights else None)
