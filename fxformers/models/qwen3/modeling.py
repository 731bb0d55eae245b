"""Qwen3 (dense): the Llama decoder with an RMSNorm over each query and key head before rotation.

Shapes: B batch, T query length, S key length (T, or the cache length L when generating), D hidden size,
N query heads, K key/value heads, H head dim (independent of D), C classes, V vocabulary.
Everything but the attention is Llama's module, reused by subclassing.
"""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...losses import sequence_classification_loss, shifted_lm_loss
from ...ops.attention import dot_product_attention
from ...ops.kv_cache import decoder_mask, update_layer_cache
from ...ops.norms import RMSNorm
from ...ops.rotary import apply_rotary
from ...outputs import CausalLMOutputWithPast, SequenceClassifierOutputWithPast
from ..gpt2.modeling import pool_last_non_pad
from ..llama.modeling import LlamaAttention, LlamaDecoderLayer, LlamaMLP, LlamaModule, LlamaPreTrainedModel, dense
from . import convert as _convert
from .configuration import Qwen3Config


class Qwen3Attention(LlamaAttention):
    def setup(self):
        super().setup()
        c = self.config
        self.q_norm = RMSNorm(c.rms_norm_eps, self.dtype)  # over H, shared by every head
        self.k_norm = RMSNorm(c.rms_norm_eps, self.dtype)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        c = self.config
        b, t, _ = x.shape
        n, k, h = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        q = apply_rotary(self.q_norm(self.q_proj(x).reshape(b, t, n, h)), cos, sin)  # [B, T, N, H]
        key = apply_rotary(self.k_norm(self.k_proj(x).reshape(b, t, k, h)), cos, sin)  # [B, T, K, H]
        value = self.v_proj(x).reshape(b, t, k, h)  # [B, T, K, H]
        if cache is not None:
            cache = update_layer_cache(cache, key, value, cache_index)
            key, value = cache["key"], cache["value"]  # [B, L, K, H]
        mask = decoder_mask(key_mask, t, cache_index, c.layer_sliding_window(self.layer_idx))  # [B, 1, T, S]
        rate = c.attention_dropout
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(
            q, key, value, mask=mask, dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions
        )
        return self.o_proj(context.reshape(b, t, n * h)), cache, weights  # [B, T, D]


class Qwen3DecoderLayer(LlamaDecoderLayer):
    def setup(self):
        c = self.config
        self.input_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.self_attn = Qwen3Attention(c, self.layer_idx, self.dtype)
        self.post_attention_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.mlp = LlamaMLP(c, self.dtype)


class Qwen3Module(LlamaModule):
    """The bare decoder: embeddings, Qwen3 layers, final RMSNorm (Llama's forward)."""

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=nn.initializers.normal(c.initializer_range)
        )
        self.layers = [Qwen3DecoderLayer(c, i, self.dtype) for i in range(c.num_hidden_layers)]
        self.norm = RMSNorm(c.rms_norm_eps, self.dtype)


class Qwen3ForCausalLMModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 cache=None, cache_index=None, only_last_logits=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        c = self.config
        out = Qwen3Module(c, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, cache, cache_index, deterministic,
            output_attentions, output_hidden_states,
        )
        x = out.last_hidden_state[:, -1:] if only_last_logits else out.last_hidden_state  # [B, T, D]
        if c.tie_word_embeddings:
            embedding = self.variables["params"]["model"]["embed_tokens"]["embedding"]
            logits = x @ embedding.astype(self.dtype).T  # [B, T, V]
        else:
            logits = dense(c, c.vocab_size, False, self.dtype, name="lm_head")(x)
        logits = logits.astype(jnp.float32)
        loss = None if labels is None else shifted_lm_loss(logits, labels)
        return CausalLMOutputWithPast(loss, logits, out.past_key_values, out.hidden_states, out.attentions)


class Qwen3ForSequenceClassificationModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        out = Qwen3Module(c, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, None, None, deterministic, output_attentions,
            output_hidden_states,
        )
        scores = dense(c, c.num_labels, False, self.dtype, name="score")(out.last_hidden_state)  # [B, T, C]
        logits = pool_last_non_pad(scores, input_ids, c.pad_token_id).astype(jnp.float32)  # [B, C]
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutputWithPast(loss, logits, None, out.hidden_states, out.attentions)


# -- public classes -------------------------------------------------------------------------------------------------
class Qwen3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Qwen3Config

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class Qwen3Model(Qwen3PreTrainedModel):
    module_class = Qwen3Module
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class Qwen3ForCausalLM(DecoderOnlyGenerationMixin, Qwen3PreTrainedModel):
    module_class = Qwen3ForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class Qwen3ForSequenceClassification(Qwen3PreTrainedModel):
    module_class = Qwen3ForSequenceClassificationModule

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
        return _convert.sequence_classification_table(config)
