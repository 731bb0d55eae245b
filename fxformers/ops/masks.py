"""Attention masks as booleans (True = attend), shaped to broadcast against [B, N, T, S] scores."""

from __future__ import annotations

import jax.numpy as jnp


def padding_mask(attention_mask):
    """[B, S] 0/1 padding mask -> [B, 1, 1, S] bool."""
    return attention_mask[:, None, None, :].astype(bool)


def causal_mask(query_len: int, key_len: int, query_offset=0):
    """[1, 1, T, S] bool: query t (at absolute position query_offset + t) sees keys s <= its position."""
    q = jnp.arange(query_len)[:, None] + query_offset
    k = jnp.arange(key_len)[None, :]
    return (k <= q)[None, None]


def combine(*masks):
    """AND of the masks that are not None (None when all are)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else jnp.logical_and(out, m)
    return out
