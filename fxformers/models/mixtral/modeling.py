"""Mixtral: Llama-family attention with a sparse mixture-of-experts feed-forward; the MoE decoder modules here also
serve Qwen3-MoE through the config methods ``num_experts_total``, ``expert_intermediate_size``, ``normalize_top_k``
and ``is_sparse_layer``.

Shapes: B batch, T query length, S key length, D hidden size, N query heads, K key/value heads, H head dim,
E experts, k experts per token, F expert intermediate size, V vocabulary.

Router logits ([B*T, E] per sparse layer, as Transformers returns them) come back when ``output_router_logits`` is
set (the call's keyword or ``config.output_router_logits``); the causal-LM loss then adds
``router_aux_loss_coef * aux_loss``, the load-balancing loss over the real tokens of ``attention_mask``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...losses import shifted_lm_loss
from ...modeling import PreTrainedModel
from ...ops.activations import get_activation
from ...ops.moe import combine_weights, experts_feed_forward, load_balancing_loss, top_k_routing
from ...ops.norms import RMSNorm
from ...ops.rotary import cos_sin, rotary_dim
from ...ops.remat import maybe_remat
from ...outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from ..decoder_heads import DecoderForSequenceClassificationModule, SequenceClassificationMixin
from ..llama.modeling import LlamaAttention, LlamaMLP, dense
from . import convert as _convert
from .configuration import MixtralConfig


class MoeExperts(nn.Module):
    """E gated MLPs as stacked kernels: gate_proj/up_proj [E, D, F], down_proj [E, F, D]."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, combine):
        c = self.config
        e, d, f = c.num_experts_total(), c.hidden_size, c.expert_intermediate_size()
        init = nn.initializers.normal(c.initializer_range)
        gate = self.param("gate_proj", init, (e, d, f))
        up = self.param("up_proj", init, (e, d, f))
        down = self.param("down_proj", init, (e, f, d))
        cast = lambda w: w.astype(self.dtype)  # noqa: E731
        return experts_feed_forward(x, combine, cast(gate), cast(up), cast(down), get_activation(c.hidden_act))


class SparseMoeBlock(nn.Module):
    """Softmax top-k router (``gate``, no bias) and the experts; returns (output [B, T, D], router logits [B*T, E])."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        b, t, d = x.shape
        jitter = getattr(c, "router_jitter_noise", 0.0) or 0.0
        if jitter > 0 and not deterministic:  # Mixtral's training-time multiplicative noise on the block's input
            noise = jax.random.uniform(self.make_rng("dropout"), x.shape, jnp.float32, 1.0 - jitter, 1.0 + jitter)
            x = (x * noise).astype(x.dtype)
        x = x.reshape(b * t, d)  # [B*T, D]
        logits = dense(c, c.num_experts_total(), False, self.dtype, name="gate")(x)  # [B*T, E]
        weights, experts = top_k_routing(logits, c.num_experts_per_tok, c.normalize_top_k())  # [B*T, k]
        combine = combine_weights(weights, experts, c.num_experts_total())  # [B*T, E]
        out = MoeExperts(c, self.dtype, name="experts")(x, combine)  # [B*T, D]
        return out.reshape(b, t, d), logits


class MoeDecoderLayer(nn.Module):
    config: Any
    layer_idx: int
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.input_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.self_attn = LlamaAttention(c, self.layer_idx, self.dtype)
        self.post_attention_layernorm = RMSNorm(c.rms_norm_eps, self.dtype)
        self.sparse = c.is_sparse_layer(self.layer_idx)
        self.mlp = SparseMoeBlock(c, self.dtype) if self.sparse else LlamaMLP(c, self.dtype)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        h, cache, weights = self.self_attn(
            self.input_layernorm(x), cos, sin, key_mask, cache, cache_index, deterministic, output_attentions
        )
        x = x + h
        h = self.post_attention_layernorm(x)
        h, router_logits = self.mlp(h, deterministic) if self.sparse else (self.mlp(h), None)
        return x + h, cache, weights, router_logits


class MoeModule(nn.Module):
    """The bare MoE decoder: embeddings, layers, final RMSNorm (optionally the router logits of the sparse layers)."""

    config: Any
    dtype: Any = jnp.float32
    output_router_logits: Optional[bool] = None  # None: config.output_router_logits

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=nn.initializers.normal(c.initializer_range)
        )
        self.layers = [maybe_remat(MoeDecoderLayer, c)(c, i, self.dtype) for i in range(c.num_hidden_layers)]
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
        hidden_states, attentions, router_logits, new_cache = (), (), (), []
        for i, layer in enumerate(self.layers):
            hidden_states += (x,)
            x, layer_cache, weights, logits = layer(
                x, cos, sin, attention_mask, None if cache is None else cache[i], cache_index, deterministic,
                output_attentions,
            )
            new_cache.append(layer_cache)
            attentions += (weights,)
            router_logits += () if logits is None else (logits,)
        x = self.norm(x)
        hidden_states += (x,)
        return MoeModelOutputWithPast(
            x, new_cache if cache is not None else None,
            hidden_states if output_hidden_states else None, attentions if output_attentions else None,
            router_logits if wants_router_logits(self) else None,
        )


def wants_router_logits(module: nn.Module) -> bool:
    flag = module.output_router_logits
    return bool(module.config.output_router_logits if flag is None else flag)


class MoeForCausalLMModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    output_router_logits: Optional[bool] = None

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 cache=None, cache_index=None, only_last_logits=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        c = self.config
        out = MoeModule(c, self.dtype, self.output_router_logits, name="model")(
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
        aux_loss = None
        if out.router_logits is not None:
            # Transformers passes the forward's own attention_mask (None: every token counts)
            aux_loss = load_balancing_loss(out.router_logits, c.num_experts_total(), c.num_experts_per_tok,
                                           attention_mask if cache is None else None)
            if loss is not None:
                loss = loss + c.router_aux_loss_coef * aux_loss
        return MoeCausalLMOutputWithPast(
            loss, aux_loss, logits, out.past_key_values, out.hidden_states, out.attentions, out.router_logits
        )


class MoeForSequenceClassificationModule(DecoderForSequenceClassificationModule):
    base_module = MoeModule


# -- public classes -------------------------------------------------------------------------------------------------
class MoePreTrainedModel(PreTrainedModel):
    """Shared by the MoE families: Llama-family loading plus ``output_router_logits`` per call."""

    base_model_prefix = "model"
    has_base_prefix = True
    vocab_params = ((r"embed_tokens/embedding$", 0), (r"^lm_head/kernel$", 1))

    def cache_spec(self) -> tuple[int, int, int]:
        c = self.config
        return c.num_hidden_layers, c.num_key_value_heads, c.head_dim

    def max_input_length(self) -> Optional[int]:
        return None  # rotary positions: no hard limit

    def __call__(self, *args: Any, output_router_logits: Optional[bool] = None, **kwargs: Any):
        """As PreTrainedModel.__call__; ``output_router_logits`` (default ``config.output_router_logits``) returns
        the router logits and, for the causal LM, the auxiliary loss (added to the loss when labels are given)."""
        fields = getattr(self.module, "output_router_logits", "absent")
        if output_router_logits is None or fields == "absent" or bool(output_router_logits) == wants_router_logits(self.module):
            return super().__call__(*args, **kwargs)
        other = type(self)._from_parts(self.config, self.params, self.dtype.name)
        other.module = self.module.clone(output_router_logits=bool(output_router_logits))
        return PreTrainedModel.__call__(other, *args, **kwargs)


class MixtralPreTrainedModel(MoePreTrainedModel):
    config_class = MixtralConfig

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class MixtralModel(MixtralPreTrainedModel):
    module_class = MoeModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class MixtralForCausalLM(DecoderOnlyGenerationMixin, MixtralPreTrainedModel):
    module_class = MoeForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class MixtralForSequenceClassification(SequenceClassificationMixin, MixtralPreTrainedModel):
    module_class = MoeForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config).prefixed("model.", "model/") + cls.head_table()
