"""Gemma 3 (text): Gemma 2's decoder with a ``(1 + weight)`` RMSNorm over each query and key head before rotation,
and separate rotary settings for sliding and global layers (chosen by ``Gemma3TextConfig.layer_rope``).

Shapes: B batch, T query length, D hidden size, N query heads, K key/value heads, H head dim, V vocabulary.
"""

from __future__ import annotations

from typing import ClassVar

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
