"""Gemma (1): the Llama decoder with Gemma's ``(1 + weight)`` RMSNorm and embeddings scaled by sqrt(D).

Shapes: B batch, T query length, S key length (T, or the cache length L when generating), D hidden size,
N query heads, K key/value heads, H head dim (independent of D), C classes, V vocabulary.
Attention and MLP are Llama's modules; the causal-LM and classifier heads here are written over a ``decoder_class``
so Gemma 2 and 3 reuse them with their own decoders.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...losses import sequence_classification_loss, shifted_lm_loss
from ...ops.norms import OffsetRMSNorm
from ...ops.remat import maybe_remat
from ...outputs import CausalLMOutputWithPast, SequenceClassifierOutputWithPast
from ..gpt2.modeling import pool_last_non_pad
from ..llama.modeling import LlamaAttention, LlamaDecoderLayer, LlamaMLP, LlamaModule, LlamaPreTrainedModel, dense
from . import convert as _convert
from .configuration import GemmaConfig


class ScaledEmbed(nn.Embed):
    """Token embeddings times ``scale``; the factor is cast to the compute dtype first (sqrt(D) rounds in bf16,
    exactly as Transformers casts its ``embed_scale`` buffer to the weight dtype)."""

    scale: float = 1.0

    def __call__(self, inputs):
        return super().__call__(inputs) * jnp.asarray(self.scale, self.dtype)  # [B, T, D]


def scaled_embed(config, dtype) -> ScaledEmbed:
    return ScaledEmbed(
        config.vocab_size, config.hidden_size, dtype=dtype, scale=math.sqrt(config.hidden_size),
        embedding_init=nn.initializers.normal(config.initializer_range),
    )


class GemmaDecoderLayer(LlamaDecoderLayer):
    def setup(self):
        c = self.config
        self.input_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)
        self.self_attn = LlamaAttention(c, self.layer_idx, self.dtype)
        self.post_attention_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)
        self.mlp = LlamaMLP(c, self.dtype)


class GemmaModule(LlamaModule):
    """The bare decoder: scaled embeddings, Gemma layers, final norm (Llama's forward)."""

    def setup(self):
        c = self.config
        self.embed_tokens = scaled_embed(c, self.dtype)
        self.layers = [maybe_remat(GemmaDecoderLayer, c)(c, i, self.dtype) for i in range(c.num_hidden_layers)]
        self.norm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)


class GemmaForCausalLMModule(nn.Module):
    """``model`` (a ``decoder_class``) and the tied or untied vocabulary head."""

    config: Any
    dtype: Any = jnp.float32
    decoder_class: ClassVar[type] = GemmaModule

    def final_logits(self, logits):
        """float32 logits [B, T, V] -> the model's output logits (Gemma 2 soft-caps them here)."""
        return logits

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 cache=None, cache_index=None, only_last_logits=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        c = self.config
        out = self.decoder_class(c, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, cache, cache_index, deterministic,
            output_attentions, output_hidden_states,
        )
        x = out.last_hidden_state[:, -1:] if only_last_logits else out.last_hidden_state  # [B, T, D]
        if c.tie_word_embeddings:
            embedding = self.variables["params"]["model"]["embed_tokens"]["embedding"]
            logits = x @ embedding.astype(self.dtype).T  # [B, T, V]
        else:
            logits = dense(c, c.vocab_size, False, self.dtype, name="lm_head")(x)
        logits = self.final_logits(logits.astype(jnp.float32))
        loss = None if labels is None else shifted_lm_loss(logits, labels)
        return CausalLMOutputWithPast(loss, logits, out.past_key_values, out.hidden_states, out.attentions)


class GemmaForSequenceClassificationModule(nn.Module):
    """``model`` and a bias-free ``score`` head read at the last non-padding token."""

    config: Any
    dtype: Any = jnp.float32
    decoder_class: ClassVar[type] = GemmaModule

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        out = self.decoder_class(c, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, None, None, deterministic, output_attentions,
            output_hidden_states,
        )
        scores = dense(c, c.num_labels, False, self.dtype, name="score")(out.last_hidden_state)  # [B, T, C]
        logits = pool_last_non_pad(scores, input_ids, c.pad_token_id).astype(jnp.float32)  # [B, C]
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutputWithPast(loss, logits, None, out.hidden_states, out.attentions)


# -- public classes -------------------------------------------------------------------------------------------------
class GemmaPreTrainedModel(LlamaPreTrainedModel):
    config_class = GemmaConfig
    family_convert = _convert  # the family's conversion module; Gemma 2 and 3 set their own

    @classmethod
    def partition_rules(cls, config):
        return cls.family_convert.partition_rules(config)


class GemmaModel(GemmaPreTrainedModel):
    module_class = GemmaModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return cls.family_convert.base_table(config)


class GemmaForCausalLM(DecoderOnlyGenerationMixin, GemmaPreTrainedModel):
    module_class = GemmaForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return cls.family_convert.causal_lm_table(config)


class GemmaForSequenceClassification(GemmaPreTrainedModel):
    module_class = GemmaForSequenceClassificationModule

    def validate_inputs(self, inputs: dict) -> None:
        super().validate_inputs(inputs)
        ids = inputs.get("input_ids")
        if self.config.pad_token_id is None and ids is not None and ids.shape[0] > 1:
            raise ValueError(
                f"{type(self).__name__} pools the last non-padding token, so batches of more than one need "
                "config.pad_token_id (e.g. from_pretrained(..., pad_token_id=tokenizer.pad_token_id))."
            )

    @classmethod
    def conversion_table(cls, config):
        return cls.family_convert.sequence_classification_table(config)
