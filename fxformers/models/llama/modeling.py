"""The Llama family (Llama 2/3/3.1/3.2, Mistral, Qwen2): decoder and causal-LM head.

Shapes: B batch, T query length, S key length (T, or the cache length L when generating), D hidden size,
N query heads, K key/value heads (grouped-query attention, N % K == 0), H head dim, F intermediate size, V vocabulary.
The three architectures differ only in config fields read through ``LlamaConfig`` methods (projection biases, the
sliding window of each layer), so one set of modules serves them all.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...losses import shifted_lm_loss
from ...modeling import PreTrainedModel
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.kv_cache import decoder_mask, update_layer_cache
from ...ops.norms import RMSNorm
from ...ops.remat import maybe_remat
from ...ops.rotary import apply_rotary, cos_sin, rotary_dim
from ...outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from . import convert as _convert
from .configuration import LlamaConfig, MistralConfig, Qwen2Config


def dense(config, features: int, use_bias: bool, dtype, name: Optional[str] = None) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


class LlamaAttention(nn.Module):
    config: Any
    layer_idx: int
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        h = c.head_dim
        self.q_proj = dense(c, c.num_attention_heads * h, c.qkv_bias(), self.dtype)
        self.k_proj = dense(c, c.num_key_value_heads * h, c.qkv_bias(), self.dtype)
        self.v_proj = dense(c, c.num_key_value_heads * h, c.qkv_bias(), self.dtype)
        self.o_proj = dense(c, c.hidden_size, c.o_bias(), self.dtype)
        if c.qk_norm():
            self.q_norm = RMSNorm(c.rms_norm_eps, self.dtype)
            self.k_norm = RMSNorm(c.rms_norm_eps, self.dtype)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        c = self.config
        b, t, _ = x.shape
        n, k, h = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        q = self.q_proj(x).reshape(b, t, n, h)  # [B, T, N, H]
        key = self.k_proj(x).reshape(b, t, k, h)  # [B, T, K, H]
        if c.qk_norm():
            q, key = self.q_norm(q), self.k_norm(key)
        q, key = apply_rotary(q, cos, sin), apply_rotary(key, cos, sin)
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


class LlamaMLP(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.gate_proj = dense(c, c.intermediate_size, c.mlp_bias, self.dtype)
        self.up_proj = dense(c, c.intermediate_size, c.mlp_bias, self.dtype)
        self.down_proj = dense(c, c.hidden_size, c.mlp_bias, self.dtype)
        self.act = get_activation(c.hidden_act)

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))  # [B, T, F] -> [B, T, D]


class LlamaDecoderLayer(nn.Module):
    config: Any
    layer_idx: int
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.input_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.self_attn = LlamaAttention(c, self.layer_idx, self.dtype)
        self.post_attention_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.mlp = LlamaMLP(c, self.dtype)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        h, cache, weights = self.self_attn(
            self.input_layernorm(x), cos, sin, key_mask, cache, cache_index, deterministic, output_attentions
        )
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, cache, weights


class LlamaModule(nn.Module):
    """The bare decoder: embeddings, layers, final RMSNorm."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=nn.initializers.normal(c.initializer_range)
        )
        self.layers = [maybe_remat(LlamaDecoderLayer, c)(c, i, self.dtype) for i in range(c.num_hidden_layers)]
        self.norm = RMSNorm(c.rms_norm_eps, self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, cache=None,
                 cache_index=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, D]
        b, t = x.shape[:2]
        if cache_index is None:
            cache_index = jnp.zeros((), jnp.int32)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t)[None, :] + cache_index, (b, t))  # [B, T]
        if attention_mask is None:
            attention_mask = jnp.ones((b, t if cache is None else cache[0]["key"].shape[1]), jnp.int32)
        cos, sin = cos_sin(c, rotary_dim(c, c.head_dim), jnp.broadcast_to(position_ids, (b, t)), self.dtype)
        hidden_states, attentions, new_cache = (), (), []
        for i, layer in enumerate(self.layers):
            hidden_states += (x,)
            x, layer_cache, weights = layer(
                x, cos, sin, attention_mask, None if cache is None else cache[i], cache_index, deterministic,
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


class LlamaForCausalLMModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    base_module: ClassVar[type[nn.Module]] = LlamaModule  # the bare decoder (a family's variant of LlamaModule)

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 cache=None, cache_index=None, only_last_logits=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        c = self.config
        out = self.base_module(c, self.dtype, name="model")(
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


# -- public classes -------------------------------------------------------------------------------------------------
class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    has_base_prefix = True
    vocab_params = ((r"embed_tokens/embedding$", 0), (r"^lm_head/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def cache_spec(self) -> tuple[int, int, int]:
        c = self.config
        return c.num_hidden_layers, c.num_key_value_heads, c.head_dim

    def max_input_length(self) -> Optional[int]:
        return None  # rotary positions: no hard limit (Transformers warns past max_position_embeddings, so do we not)


class LlamaModel(LlamaPreTrainedModel):
    module_class = LlamaModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class LlamaForCausalLM(DecoderOnlyGenerationMixin, LlamaPreTrainedModel):
    module_class = LlamaForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig


class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config
