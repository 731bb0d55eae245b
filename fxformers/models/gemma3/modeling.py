"""Gemma 3 (text): Gemma 2's decoder with a ``(1 + weight)`` RMSNorm over each query and key head before rotation,
and separate rotary settings for sliding and global layers (chosen by ``Gemma3TextConfig.layer_rope``).

Shapes: B batch, T query length, D hidden size, N query heads, K key/value heads, H head dim, V vocabulary.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import jax.numpy as jnp

from ...ops.norms import OffsetRMSNorm
from ..gemma2.modeling import (Gemma2Attention, Gemma2DecoderLayer, Gemma2ForCausalLM, Gemma2ForCausalLMModule,
                               Gemma2ForSequenceClassification, Gemma2ForSequenceClassificationModule, Gemma2Model,
                               Gemma2Module)
from . import convert as _convert
from .configuration import Gemma3TextConfig


class Gemma3Attention(Gemma2Attention):
    def setup(self):
        super().setup()
        c = self.config
        self.q_norm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)  # over H, shared by every head
        self.k_norm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)

    def project(self, x):
        q, key, value = super().project(x)  # [B, T, N, H], [B, T, K, H], [B, T, K, H]
        return self.q_norm(q), self.k_norm(key), value

    def mask(self, key_mask, query_len: int, cache_index):
        c = self.config
        if not c.use_bidirectional_attention:
            return super().mask(key_mask, query_len, cache_index)
        return bidirectional_mask(key_mask, query_len, cache_index, c.layer_sliding_window(self.layer_idx))


def bidirectional_mask(key_mask, query_len: int, cache_index, window: Optional[int]):
    """Encoder-style Gemma 3 (EmbeddingGemma): every query sees every real key, or with a window w the keys with
    |q - k| < w, as Transformers' bidirectional overlay. key_mask [B, S] -> bool [B, 1, T, S]."""
    q = jnp.arange(query_len)[:, None] + jnp.asarray(cache_index, jnp.int32)  # [T, 1] query slots
    k = jnp.arange(key_mask.shape[1])[None, :]  # [1, S] key slots
    allowed = jnp.ones((query_len, key_mask.shape[1]), bool) if window is None else jnp.abs(q - k) < window
    return key_mask[:, None, None, :].astype(bool) & allowed[None, None]


class Gemma3DecoderLayer(Gemma2DecoderLayer):
    attention_class: ClassVar[type] = Gemma3Attention


class Gemma3TextModule(Gemma2Module):
    layer_class: ClassVar[type] = Gemma3DecoderLayer


class Gemma3ForCausalLMModule(Gemma2ForCausalLMModule):
    decoder_class: ClassVar[type] = Gemma3TextModule


class Gemma3TextForSequenceClassificationModule(Gemma2ForSequenceClassificationModule):
    decoder_class: ClassVar[type] = Gemma3TextModule


# -- public classes -------------------------------------------------------------------------------------------------
class Gemma3TextModel(Gemma2Model):
    config_class = Gemma3TextConfig
    family_convert = _convert
    module_class = Gemma3TextModule


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    config_class = Gemma3TextConfig
    family_convert = _convert
    module_class = Gemma3ForCausalLMModule


class Gemma3TextForSequenceClassification(Gemma2ForSequenceClassification):
    config_class = Gemma3TextConfig
    family_convert = _convert
    module_class = Gemma3TextForSequenceClassificationModule
