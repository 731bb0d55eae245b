"""GPT-2: the decoder, the language-model head and the sequence-classification head.

Shapes: B batch, T query length, S key length (T, or the cache length L when generating), D hidden size (n_embd),
N heads, H head dim (D = N * H), F inner size, V vocabulary, C labels.
"""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...losses import sequence_classification_loss, shifted_lm_loss
from ...modeling import PreTrainedModel
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.kv_cache import decoder_mask, update_layer_cache
from ...ops.remat import maybe_remat
from ...outputs import BaseModelOutputWithPast, CausalLMOutputWithPast, SequenceClassifierOutputWithPast
from . import convert as _convert
from .configuration import GPT2Config


def dense(config, features: int, dtype, name: Optional[str] = None, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


class GPT2Attention(nn.Module):
    config: Any
    layer_idx: int
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.c_attn = dense(c, 3 * c.n_embd, self.dtype)
        self.c_proj = dense(c, c.n_embd, self.dtype)
        self.resid_dropout = nn.Dropout(c.resid_pdrop)

    def __call__(self, x, key_mask, cache, cache_index, deterministic, output_attentions):
        c = self.config
        b, t, d = x.shape
        n = c.n_head
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # [B, T, D] each
        q, k, v = (a.reshape(b, t, n, d // n) for a in (q, k, v))  # [B, T, N, H]
        if cache is not None:
            cache = update_layer_cache(cache, k, v, cache_index)
            k, v = cache["key"], cache["value"]  # [B, L, N, H]
        scale = (d // n) ** -0.5 if c.scale_attn_weights else 1.0
        if c.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        rate = c.attn_pdrop
        rng = None if deterministic or not rate else self.make_rng("dropout")
        mask = decoder_mask(key_mask, t, cache_index if cache is not None else 0)  # [B, 1, T, S]
        context, weights = dot_product_attention(
            q, k, v, mask=mask, scale=scale, dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions
        )
        out = self.resid_dropout(self.c_proj(context.reshape(b, t, d)), deterministic=deterministic)  # [B, T, D]
        return out, cache, weights


class GPT2MLP(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.c_fc = dense(c, c.n_inner or 4 * c.n_embd, self.dtype)
        self.c_proj = dense(c, c.n_embd, self.dtype)
        self.act = get_activation(c.activation_function)
        self.dropout = nn.Dropout(c.resid_pdrop)

    def __call__(self, x, deterministic):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))), deterministic=deterministic)  # [B, T, F] -> [B, T, D]


class GPT2Block(nn.Module):
    config: Any
    layer_idx: int
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.ln_1 = nn.LayerNorm(epsilon=c.layer_norm_epsilon, dtype=self.dtype)
        self.attn = GPT2Attention(c, self.layer_idx, self.dtype)
        self.ln_2 = nn.LayerNorm(epsilon=c.layer_norm_epsilon, dtype=self.dtype)
        self.mlp = GPT2MLP(c, self.dtype)

    def __call__(self, x, key_mask, cache, cache_index, deterministic, output_attentions):
        h, cache, weights = self.attn(self.ln_1(x), key_mask, cache, cache_index, deterministic, output_attentions)
        x = x + h
        x = x + self.mlp(self.ln_2(x), deterministic)
        return x, cache, weights


class GPT2Module(nn.Module):
    """The bare decoder: token + position embeddings, blocks, final LayerNorm."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        self.wte = nn.Embed(c.vocab_size, c.n_embd, dtype=self.dtype, embedding_init=init)
        self.wpe = nn.Embed(c.n_positions, c.n_embd, dtype=self.dtype, embedding_init=init)
        self.drop = nn.Dropout(c.embd_pdrop)
        self.h = [maybe_remat(GPT2Block, c)(c, i, self.dtype) for i in range(c.n_layer)]
        self.ln_f = nn.LayerNorm(epsilon=c.layer_norm_epsilon, dtype=self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, cache=None,
                 cache_index=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, D]
        b, t = x.shape[:2]
        if cache_index is None:
            cache_index = jnp.zeros((), jnp.int32)
        if position_ids is None:
            position_ids = (jnp.arange(t) + cache_index)[None, :]  # [1, T], as Transformers without a mask
        x = self.drop(x + self.wpe(position_ids), deterministic=deterministic)
        if attention_mask is None:
            attention_mask = jnp.ones((b, t if cache is None else cache[0]["key"].shape[1]), jnp.int32)
        hidden_states, attentions, new_cache = (), (), []
        for i, block in enumerate(self.h):
            hidden_states += (x,)
            x, layer_cache, weights = block(
                x, attention_mask, None if cache is None else cache[i], cache_index, deterministic, output_attentions
            )
            new_cache.append(layer_cache)
            attentions += (weights,)
        x = self.ln_f(x)
        hidden_states += (x,)
        return BaseModelOutputWithPast(
            x, new_cache if cache is not None else None,
            hidden_states if output_hidden_states else None, attentions if output_attentions else None,
        )


class GPT2LMHeadModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 cache=None, cache_index=None, only_last_logits=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        out = GPT2Module(self.config, self.dtype, name="transformer")(
            input_ids, attention_mask, position_ids, inputs_embeds, cache, cache_index, deterministic,
            output_attentions, output_hidden_states,
        )
        x = out.last_hidden_state[:, -1:] if only_last_logits else out.last_hidden_state  # [B, T, D]
        if self.config.tie_word_embeddings:
            wte = self.variables["params"]["transformer"]["wte"]["embedding"]
            logits = x @ wte.astype(self.dtype).T  # [B, T, V]
        else:
            logits = dense(self.config, self.config.vocab_size, self.dtype, name="lm_head", use_bias=False)(x)
        logits = logits.astype(jnp.float32)
        loss = None if labels is None else shifted_lm_loss(logits, labels)
        return CausalLMOutputWithPast(loss, logits, out.past_key_values, out.hidden_states, out.attentions)


class GPT2ForSequenceClassificationModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        out = GPT2Module(c, self.dtype, name="transformer")(
            input_ids, attention_mask, position_ids, inputs_embeds, None, None, deterministic, output_attentions,
            output_hidden_states,
        )
        scores = dense(c, c.num_labels, self.dtype, name="score", use_bias=False)(out.last_hidden_state)  # [B, T, C]
        logits = pool_last_non_pad(scores, input_ids, c.pad_token_id).astype(jnp.float32)  # [B, C]
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutputWithPast(loss, logits, None, out.hidden_states, out.attentions)


def pool_last_non_pad(scores, input_ids, pad_token_id):
    """Transformers' pooling for decoder classifiers: the rightmost token that is not ``pad_token_id``.

    scores [B, T, C] -> [B, C]. Without a pad token (or with inputs_embeds) it takes the last position.
    """
    if pad_token_id is None or input_ids is None:
        return scores[:, -1]
    t = input_ids.shape[-1]
    last = jnp.argmax(jnp.arange(t)[None, :] * (input_ids != pad_token_id), axis=-1)  # [B]
    return jnp.take_along_axis(scores, last[:, None, None], axis=1)[:, 0]


# -- public classes -------------------------------------------------------------------------------------------------
class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    has_base_prefix = True
    vocab_params = ((r"wte/embedding$", 0), (r"^lm_head/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def cache_spec(self) -> tuple[int, int, int]:
        c = self.config
        return c.n_layer, c.n_head, c.n_embd // c.n_head

    def generation_max_positions(self) -> int:
        return self.config.n_positions

    def validate_inputs(self, inputs: dict) -> None:
        super().validate_inputs(inputs)
        if "position_ids" in inputs:
            from ...modeling import check_ids

            check_ids(inputs["position_ids"], "position_ids", self.config.n_positions)


class GPT2Model(GPT2PreTrainedModel):
    module_class = GPT2Module
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table()


class GPT2LMHeadModel(DecoderOnlyGenerationMixin, GPT2PreTrainedModel):
    module_class = GPT2LMHeadModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.lm_head_table(config)


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    module_class = GPT2ForSequenceClassificationModule

    def validate_inputs(self, inputs: dict) -> None:
        super().validate_inputs(inputs)
        ids = inputs.get("input_ids")
        if self.config.pad_token_id is None and ids is not None and ids.shape[0] > 1:
            raise ValueError(
                "GPT2ForSequenceClassification pools the last non-padding token, so batches of more than one need "
                "config.pad_token_id (e.g. from_pretrained(..., pad_token_id=tokenizer.pad_token_id))."
            )

    @classmethod
    def conversion_table(cls, config):
        return _convert.sequence_classification_table()
