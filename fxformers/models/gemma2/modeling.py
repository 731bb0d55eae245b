"""Gemma 2: four norms per layer, soft-capped attention and final logits, alternating sliding-window layers.

Shapes: B batch, T query length, S key length (T, or the cache length L when generating), D hidden size,
N query heads, K key/value heads, H head dim (independent of D), F intermediate size, V vocabulary.
Scores are scaled by ``query_pre_attn_scalar ** -0.5`` (not H), soft-capped as ``cap * tanh(s / cap)`` before the
mask; the logits are capped the same way with ``final_logit_softcapping``. Per-layer choices (window, rotary
settings) come from ``Gemma2Config`` methods, so Gemma 3 reuses these modules with its own config and attention.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.kv_cache import decoder_mask, update_layer_cache
from ...ops.norms import OffsetRMSNorm
from ...ops.rotary import apply_rotary, cos_sin, rotary_dim
from ...ops.remat import maybe_remat
from ...outputs import BaseModelOutputWithPast
from ..gemma.modeling import (GemmaForCausalLM, GemmaForCausalLMModule, GemmaForSequenceClassification,
                              GemmaForSequenceClassificationModule, GemmaModel, scaled_embed)
from ..llama.modeling import LlamaAttention, dense
from . import convert as _convert
from .configuration import Gemma2Config


class Gemma2Attention(LlamaAttention):
    """Llama's projections; Gemma 2's scale, soft-cap and per-layer window."""

    def project(self, x):
        """x [B, T, D] -> q [B, T, N, H], key and value [B, T, K, H], before rotation."""
        c = self.config
        b, t, _ = x.shape
        n, k, h = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        return self.q_proj(x).reshape(b, t, n, h), self.k_proj(x).reshape(b, t, k, h), self.v_proj(x).reshape(b, t, k, h)

    def mask(self, key_mask, query_len: int, cache_index):
        """key_mask [B, S] -> bool [B, 1, T, S]: padding, causal and this layer's sliding window."""
        return decoder_mask(key_mask, query_len, cache_index, self.config.layer_sliding_window(self.layer_idx))

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        c = self.config
        b, t, _ = x.shape
        q, key, value = self.project(x)
        q, key = apply_rotary(q, cos, sin), apply_rotary(key, cos, sin)
        if cache is not None:
            cache = update_layer_cache(cache, key, value, cache_index)
            key, value = cache["key"], cache["value"]  # [B, L, K, H]
        mask = self.mask(key_mask, t, cache_index)  # [B, 1, T, S]
        rate = c.attention_dropout
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(
            q, key, value, mask=mask, scale=c.query_pre_attn_scalar**-0.5, softcap=c.attention_softcap(),
            dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions,
        )
        return self.o_proj(context.reshape(b, t, -1)), cache, weights  # [B, T, D]


class Gemma2MLP(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.gate_proj = dense(c, c.intermediate_size, False, self.dtype)
        self.up_proj = dense(c, c.intermediate_size, False, self.dtype)
        self.down_proj = dense(c, c.hidden_size, False, self.dtype)
        self.act = get_activation(c.hidden_activation)

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))  # [B, T, F] -> [B, T, D]


class Gemma2DecoderLayer(nn.Module):
    """x + post_norm(attn(input_norm(x))), then h + post_ff_norm(mlp(pre_ff_norm(h)))."""

    config: Any
    layer_idx: int
    dtype: Any = jnp.float32
    attention_class: ClassVar[type] = Gemma2Attention

    def setup(self):
        c = self.config
        self.input_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)
        self.self_attn = self.attention_class(c, self.layer_idx, self.dtype)
        self.post_attention_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)
        self.pre_feedforward_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)
        self.mlp = Gemma2MLP(c, self.dtype)
        self.post_feedforward_layernorm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        h, cache, weights = self.self_attn(
            self.input_layernorm(x), cos, sin, key_mask, cache, cache_index, deterministic, output_attentions
        )
        x = x + self.post_attention_layernorm(h)
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x, cache, weights


class Gemma2Module(nn.Module):
    """The bare decoder: scaled embeddings, layers (each with its own rotary settings and window), final norm."""

    config: Any
    dtype: Any = jnp.float32
    layer_class: ClassVar[type] = Gemma2DecoderLayer

    def setup(self):
        c = self.config
        self.embed_tokens = scaled_embed(c, self.dtype)
        self.layers = [maybe_remat(self.layer_class, c)(c, i, self.dtype) for i in range(c.num_hidden_layers)]
        self.norm = OffsetRMSNorm(c.rms_norm_eps, self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, cache=None,
                 cache_index=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, D]
        b, t = x.shape[:2]
        if cache_index is None:
            cache_index = jnp.zeros((), jnp.int32)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t)[None, :] + cache_index, (b, t))  # [B, T]
        position_ids = jnp.broadcast_to(position_ids, (b, t))
        if attention_mask is None:
            attention_mask = jnp.ones((b, t if cache is None else cache[0]["key"].shape[1]), jnp.int32)
        rotary = {}  # layer rope key -> (cos, sin) [B, T, R], computed once per distinct setting
        hidden_states, attentions, new_cache = (), (), []
        for i, layer in enumerate(self.layers):
            key, rope_config = c.layer_rope(i)
            if key not in rotary:
                rotary[key] = cos_sin(rope_config, rotary_dim(rope_config, c.head_dim), position_ids, self.dtype)
            hidden_states += (x,)
            x, layer_cache, weights = layer(
                x, *rotary[key], attention_mask, None if cache is None else cache[i], cache_index, deterministic,
                output_attentions,
            )
            new_cache.append(layer_cache)
            attentions += (weights,)
        x = self.norm(x)
        hidden_states += (x,)
        return BaseModelOutputWithPast(
            x, new_cache if cache is not None else None,
            hidden_states if output_hidden_states else None, attentions if output_attentions else None,
        )


def softcap(logits, cap):
    return logits if cap is None else jnp.tanh(logits / cap) * cap


class Gemma2ForCausalLMModule(GemmaForCausalLMModule):
    decoder_class: ClassVar[type] = Gemma2Module

    def final_logits(self, logits):
        return softcap(logits, self.config.final_logit_softcapping)  # [B, T, V] float32


class Gemma2ForSequenceClassificationModule(GemmaForSequenceClassificationModule):
    decoder_class: ClassVar[type] = Gemma2Module


# -- public classes -------------------------------------------------------------------------------------------------
class Gemma2Model(GemmaModel):
    config_class = Gemma2Config
    family_convert = _convert
    module_class = Gemma2Module


class Gemma2ForCausalLM(GemmaForCausalLM):
    config_class = Gemma2Config
    family_convert = _convert
    module_class = Gemma2ForCausalLMModule


class Gemma2ForSequenceClassification(GemmaForSequenceClassification):
    config_class = Gemma2Config
    family_convert = _convert
    module_class = Gemma2ForSequenceClassificationModule
