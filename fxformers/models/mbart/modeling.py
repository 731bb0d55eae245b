"""mBART: BART with pre-norm layers and a final LayerNorm on each stack; labels shift by wrapping the language id.

Shapes as in :mod:`fxformers.models.bart.modeling` (B batch, T length, D d_model, F ffn dim). Everything else
(positions offset by 2, ``layernorm_embedding``, ``scale_embedding``, heads, the generation protocol) is BART's.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..bart import convert as _convert
from ..bart.modeling import (
    BartDecoder,
    BartDecoderLayer,
    BartEncoder,
    BartEncoderLayer,
    BartForConditionalGeneration,
    BartForConditionalGenerationModule,
    BartForSequenceClassification,
    BartForSequenceClassificationModule,
    BartModel,
    BartModule,
    layer_norm,
)
from .configuration import MBartConfig


def shift_tokens_right(input_ids, pad_token_id):
    """mBART's shift: the last non-pad token of each row (its language id) moves to the front; -100 -> pad."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is None; set it to shift labels into decoder_input_ids.")
    ids = jnp.where(input_ids == -100, pad_token_id, input_ids)
    last = (ids != pad_token_id).sum(axis=1) - 1  # [B]
    start = jnp.take_along_axis(ids, last[:, None], axis=1)  # [B, 1]
    return jnp.concatenate([start, ids[:, :-1]], axis=1)


class MBartEncoderLayer(BartEncoderLayer):
    def __call__(self, x, mask, deterministic=True, output_attentions=False):
        h, weights, _ = self.self_attn(self.self_attn_layer_norm(x), mask, deterministic=deterministic,
                                       output_attentions=output_attentions)
        x = x + self.dropout(h, deterministic=deterministic)
        return x + self.feed_forward(self.final_layer_norm(x), deterministic), weights


class MBartDecoderLayer(BartDecoderLayer):
    def __call__(self, x, mask, encoder_hidden, encoder_mask, cross_kv=None, cache=None, cache_index=None,
                 deterministic=True, output_attentions=False):
        h, self_weights, cache = self.self_attention(self.self_attn_layer_norm(x), mask, cache, cache_index,
                                                     deterministic, output_attentions)
        x = x + self.dropout(h, deterministic=deterministic)
        h, cross_weights, _ = self.cross_attention(self.encoder_attn_layer_norm(x), encoder_hidden, encoder_mask,
                                                   cross_kv, deterministic, output_attentions)
        x = x + self.dropout(h, deterministic=deterministic)
        return x + self.feed_forward(self.final_layer_norm(x), deterministic), self_weights, cross_weights, cache


class MBartEncoder(BartEncoder):
    layer_class = MBartEncoderLayer

    def setup(self):
        super().setup()
        self.layer_norm = layer_norm(self.dtype)

    def finish(self, x):
        return self.layer_norm(x)


class MBartDecoder(BartDecoder):
    layer_class = MBartDecoderLayer

    def setup(self):
        super().setup()
        self.layer_norm = layer_norm(self.dtype)

    def finish(self, x):
        return self.layer_norm(x)


class MBartModule(BartModule):
    encoder_class = MBartEncoder
    decoder_class = MBartDecoder

    def default_decoder_input_ids(self, input_ids):
        return shift_tokens_right(input_ids, self.config.pad_token_id)


class MBartForConditionalGenerationModule(BartForConditionalGenerationModule):
    base_class = MBartModule


class MBartForSequenceClassificationModule(BartForSequenceClassificationModule):
    base_class = MBartModule


class MBartModel(BartModel):
    config_class = MBartConfig
    module_class = MBartModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config, final_layer_norms=True)


class MBartForConditionalGeneration(BartForConditionalGeneration):
    config_class = MBartConfig
    module_class = MBartForConditionalGenerationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.lm_table(config, final_layer_norms=True)


class MBartForSequenceClassification(BartForSequenceClassification):
    config_class = MBartConfig
    module_class = MBartForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.classification_table(config, final_layer_norms=True)
