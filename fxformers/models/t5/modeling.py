"""T5, T5 v1.1 / flan-T5 and mT5: the encoder-decoder, its LM head and the bare encoder.

Shapes: B batch, T decoder (query) length, S encoder (key) length, L cached decoder positions (generation), D d_model,
N heads, H d_kv (N * H need not equal D), F d_ff, V vocabulary.

T5 in brief: pre-norm blocks with an RMS layer norm (no mean, no bias), attention without 1/sqrt(H) scaling (folded
into the initialisation) and with a learned relative-position bias that only layer 0 of each stack holds (the bias it
computes is reused by every later layer), a feed-forward that is either ``act(wi x)`` or ``act(wi_0 x) * wi_1 x``,
one embedding matrix shared by encoder, decoder and (original T5) the LM head, whose input is then scaled by
D**-0.5. Parameter names follow the PyTorch checkpoint (``encoder/block_0/layer_0/SelfAttention/q``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from ...losses import cross_entropy
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.masks import causal_mask, combine, padding_mask
from ...ops.remat import maybe_remat
from ...outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput


def normal(std: float):
    return nn.initializers.normal(std)


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int):
    """Mesh TensorFlow's bucketing of ``key_position - query_position`` (int array) into [0, num_buckets).

    Exact buckets for small distances, logarithmic ones up to ``max_distance``, one bucket beyond. The
    bidirectional form (encoder) spends half the buckets on keys to the right; the causal form (decoder) folds
    every key to the right into bucket 0.
    """
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = (relative_position > 0).astype(relative_position.dtype) * num_buckets
        relative_position = jnp.abs(relative_position)
    else:
        relative_position = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (
        jnp.log(relative_position.astype(jnp.float32) / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).astype(relative_position.dtype)
    large = jnp.minimum(large, num_buckets - 1)
    return buckets + jnp.where(is_small, relative_position, large)


def shift_right(labels, decoder_start_token_id: Optional[int], pad_token_id: Optional[int]):
    """Decoder inputs from labels [B, T]: prepend the start token, drop the last label, -100 -> pad."""
    if decoder_start_token_id is None:
        raise ValueError(
            "config.decoder_start_token_id is None; set it (T5 uses the pad token id, 0) to derive decoder_input_ids "
            "from labels, or pass decoder_input_ids."
        )
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is None; set it to replace -100 in the shifted labels.")
    labels = jnp.asarray(labels)
    start = jnp.full(labels.shape[:-1] + (1,), decoder_start_token_id, labels.dtype)
    shifted = jnp.concatenate([start, labels[..., :-1]], axis=-1)
    return jnp.where(shifted == -100, pad_token_id, shifted)


class T5LayerNorm(nn.Module):
    """x / sqrt(mean(x**2) + eps) * weight: no mean subtraction, no bias; statistics in float32."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        variance = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        x = x.astype(jnp.float32) * jax.lax.rsqrt(variance + self.config.layer_norm_epsilon)
        return (weight.astype(self.dtype) * x.astype(self.dtype)).astype(self.dtype)


class T5Attention(nn.Module):
    config: Any
    has_relative_attention_bias: bool = False
    bidirectional: bool = True
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        f = c.initializer_factor
        inner = c.num_heads * c.d_kv
        dense = lambda features, std: nn.Dense(features, use_bias=False, dtype=self.dtype, kernel_init=normal(std))
        self.q = dense(inner, f * (c.d_model * c.d_kv) ** -0.5)
        self.k = dense(inner, f * c.d_model**-0.5)
        self.v = dense(inner, f * c.d_model**-0.5)
        self.o = dense(c.d_model, f * inner**-0.5)
        if self.has_relative_attention_bias:
            self.relative_attention_bias = nn.Embed(
                c.relative_attention_num_buckets, c.num_heads, dtype=self.dtype, embedding_init=normal(f * c.d_model**-0.5)
            )

    def compute_bias(self, query_positions, key_positions):
        """query_positions [T], key_positions [S] -> bias [1, N, T, S]."""
        c = self.config
        buckets = relative_position_bucket(
            key_positions[None, :] - query_positions[:, None], self.bidirectional,
            c.relative_attention_num_buckets, c.relative_attention_max_distance,
        )  # [T, S]
        return self.relative_attention_bias(buckets).transpose(2, 0, 1)[None]  # [T, S, N] -> [1, N, T, S]

    def project_kv(self, states):
        """states [B, S, D] -> keys, values [B, S, N, H] each (cross-attention K/V are computed once per prompt)."""
        b, s, _ = states.shape
        shape = (b, s, self.config.num_heads, self.config.d_kv)
        return self.k(states).reshape(shape), self.v(states).reshape(shape)  # [B, S, N, H]

    def __call__(self, x, mask, position_bias, kv_states=None, kv=None, cache=None, cache_index=None,
                 deterministic=True, output_attentions=False):
        """x [B, T, D]; self-attention unless ``kv_states`` [B, S, D] or precomputed ``kv`` are given.

        ``cache`` ({"k", "v"}: [B, L, N, H]) makes it incremental: this step's keys/values are written at
        ``cache_index`` and the query attends to all L slots (``mask`` hides the unwritten ones).
        Returns (output [B, T, D], position_bias, weights or None, updated cache or None).
        """
        c = self.config
        b, t, _ = x.shape
        q = self.q(x).reshape(b, t, c.num_heads, c.d_kv)  # [B, T, N, H]
        k, v = kv if kv is not None else self.project_kv(x if kv_states is None else kv_states)
        if cache is not None:
            k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, cache_index, 0, 0))  # [B, L, N, H]
            v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, cache_index, 0, 0))
            cache = {"k": k, "v": v}
        if position_bias is None and self.has_relative_attention_bias:
            offset = 0 if cache_index is None else cache_index
            position_bias = self.compute_bias(jnp.arange(t) + offset, jnp.arange(k.shape[1]))
        rate = c.dropout_rate
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(
            q, k, v, mask=mask, bias=position_bias, scale=1.0, dropout_rate=rate, dropout_rng=rng,
            return_weights=output_attentions,
        )
        return self.o(context.reshape(b, t, -1)), position_bias, weights, cache  # [B, T, D]


class T5LayerSelfAttention(nn.Module):
    config: Any
    has_relative_attention_bias: bool = False
    bidirectional: bool = True
    dtype: Any = jnp.float32

    def setup(self):
        self.SelfAttention = T5Attention(self.config, self.has_relative_attention_bias, self.bidirectional, self.dtype)
        self.layer_norm = T5LayerNorm(self.config, self.dtype)
        self.dropout = nn.Dropout(self.config.dropout_rate)

    def __call__(self, x, mask, position_bias, cache=None, cache_index=None, deterministic=True, output_attentions=False):
        out, position_bias, weights, cache = self.SelfAttention(
            self.layer_norm(x), mask, position_bias, cache=cache, cache_index=cache_index,
            deterministic=deterministic, output_attentions=output_attentions,
        )
        return x + self.dropout(out, deterministic=deterministic), position_bias, weights, cache


class T5LayerCrossAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.EncDecAttention = T5Attention(self.config, False, True, self.dtype)
        self.layer_norm = T5LayerNorm(self.config, self.dtype)
        self.dropout = nn.Dropout(self.config.dropout_rate)

    def __call__(self, x, encoder_hidden, mask, kv=None, deterministic=True, output_attentions=False):
        out, _, weights, _ = self.EncDecAttention(
            self.layer_norm(x), mask, None, kv_states=encoder_hidden, kv=kv, deterministic=deterministic,
            output_attentions=output_attentions,
        )
        return x + self.dropout(out, deterministic=deterministic), weights


class T5DenseActDense(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic=True):
        c = self.config
        f = c.initializer_factor
        h = nn.Dense(c.d_ff, use_bias=False, dtype=self.dtype, kernel_init=normal(f * c.d_model**-0.5), name="wi")(x)
        h = nn.Dropout(c.dropout_rate)(get_activation(c.dense_act_fn)(h), deterministic=deterministic)  # [B, T, F]
        return nn.Dense(c.d_model, use_bias=False, dtype=self.dtype, kernel_init=normal(f * c.d_ff**-0.5), name="wo")(h)


class T5DenseGatedActDense(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic=True):
        c = self.config
        f = c.initializer_factor
        dense = lambda features, std, name: nn.Dense(features, use_bias=False, dtype=self.dtype, kernel_init=normal(std), name=name)
        gate = get_activation(c.dense_act_fn)(dense(c.d_ff, f * c.d_model**-0.5, "wi_0")(x))  # [B, T, F]
        h = gate * dense(c.d_ff, f * c.d_model**-0.5, "wi_1")(x)
        h = nn.Dropout(c.dropout_rate)(h, deterministic=deterministic)
        return dense(c.d_model, f * c.d_ff**-0.5, "wo")(h)  # [B, T, D]


class T5LayerFF(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        ff = T5DenseGatedActDense if self.config.is_gated_act else T5DenseActDense
        self.DenseReluDense = ff(self.config, self.dtype)
        self.layer_norm = T5LayerNorm(self.config, self.dtype)
        self.dropout = nn.Dropout(self.config.dropout_rate)

    def __call__(self, x, deterministic=True):
        h = self.DenseReluDense(self.layer_norm(x), deterministic=deterministic)
        return x + self.dropout(h, deterministic=deterministic)


class T5Block(nn.Module):
    config: Any
    is_decoder: bool = False
    has_relative_attention_bias: bool = False
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        layers = [T5LayerSelfAttention(c, self.has_relative_attention_bias, not self.is_decoder, self.dtype)]
        if self.is_decoder:
            layers.append(T5LayerCrossAttention(c, self.dtype))
        self.layer = layers + [T5LayerFF(c, self.dtype)]

    def cross_kv(self, encoder_hidden):
        return self.layer[1].EncDecAttention.project_kv(encoder_hidden)

    def __call__(self, x, mask, position_bias, encoder_hidden=None, encoder_mask=None, cross_kv=None, cache=None,
                 cache_index=None, deterministic=True, output_attentions=False):
        x, position_bias, self_weights, cache = self.layer[0](
            x, mask, position_bias, cache, cache_index, deterministic, output_attentions
        )
        cross_weights = None
        if self.is_decoder:
            x, cross_weights = self.layer[1](x, encoder_hidden, encoder_mask, cross_kv, deterministic, output_attentions)
        x = self.layer[-1](x, deterministic)
        return x, position_bias, self_weights, cross_weights, cache


class T5Stack(nn.Module):
    """The encoder (bidirectional) or decoder (causal + cross-attention) stack, without the shared embedding."""

    config: Any
    is_decoder: bool = False
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        n = c.num_decoder_layers if self.is_decoder else c.num_layers
        self.block = [maybe_remat(T5Block, c)(c, self.is_decoder, i == 0, self.dtype) for i in range(n)]
        self.final_layer_norm = T5LayerNorm(c, self.dtype)
        self.dropout = nn.Dropout(c.dropout_rate)

    def cross_kv(self, encoder_hidden):
        return tuple(block.cross_kv(encoder_hidden) for block in self.block)

    def __call__(self, embeds, mask, encoder_hidden=None, encoder_mask=None, cross_kvs=None, caches=None,
                 cache_index=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        """embeds [B, T, D] -> (last hidden [B, T, D], hidden states, self attentions, cross attentions, caches)."""
        x = self.dropout(embeds, deterministic=deterministic)
        hidden_states, attentions, cross_attentions, new_caches = (), (), (), ()
        position_bias = None
        for i, block in enumerate(self.block):
            hidden_states += (x,)
            x, position_bias, weights, cross_weights, cache = block(
                x, mask, position_bias, encoder_hidden, encoder_mask,
                None if cross_kvs is None else cross_kvs[i], None if caches is None else caches[i], cache_index,
                deterministic, output_attentions,
            )
            attentions += (weights,)
            cross_attentions += (cross_weights,)
            new_caches += (cache,)
        x = self.dropout(self.final_layer_norm(x), deterministic=deterministic)
        hidden_states += (x,)
        return (
            x,
            hidden_states if output_hidden_states else None,
            attentions if output_attentions else None,
            cross_attentions if output_attentions and self.is_decoder else None,
            new_caches if caches is not None else None,
        )


class T5EncoderModule(nn.Module):
    """T5EncoderModel: the shared embedding and the encoder stack."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.shared = nn.Embed(c.vocab_size, c.d_model, dtype=self.dtype, embedding_init=normal(c.initializer_factor))
        self.encoder = T5Stack(c, False, self.dtype)

    def embed(self, input_ids, inputs_embeds):
        return self.shared(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, S, D]

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, deterministic=True,
               output_attentions=False, output_hidden_states=False):
        x = self.embed(input_ids, inputs_embeds)
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, hidden_states, attentions, _, _ = self.encoder(
            x, padding_mask(attention_mask), deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return BaseModelOutput(x, hidden_states, attentions)

    def __call__(self, input_ids=None, attention_mask=None, inputs_embeds=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        return self.encode(input_ids, attention_mask, inputs_embeds, deterministic, output_attentions, output_hidden_states)


class T5Module(T5EncoderModule):
    """T5Model: encoder and decoder over the shared embedding; returns the decoder's last hidden state."""

    def setup(self):
        super().setup()
        self.decoder = T5Stack(self.config, True, self.dtype)

    def decode(self, decoder_input_ids, encoder_hidden, attention_mask, decoder_attention_mask=None,
               decoder_inputs_embeds=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        y = self.embed(decoder_input_ids, decoder_inputs_embeds)  # [B, T, D]
        t = y.shape[1]
        self_mask = combine(causal_mask(t, t), None if decoder_attention_mask is None else padding_mask(decoder_attention_mask))
        encoder_mask = None if attention_mask is None else padding_mask(attention_mask)
        y, hidden_states, attentions, cross_attentions, _ = self.decoder(
            y, self_mask, encoder_hidden, encoder_mask, deterministic=deterministic,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        return y, hidden_states, attentions, cross_attentions

    def run(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds,
            decoder_inputs_embeds, deterministic, output_attentions, output_hidden_states):
        enc = self.encode(input_ids, attention_mask, inputs_embeds, deterministic, output_attentions, output_hidden_states)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("T5 needs decoder_input_ids (or decoder_inputs_embeds, or labels for the LM head).")
        dec = self.decode(decoder_input_ids, enc.last_hidden_state, attention_mask, decoder_attention_mask,
                          decoder_inputs_embeds, deterministic, output_attentions, output_hidden_states)
        return enc, dec

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        enc, (y, hidden_states, attentions, cross_attentions) = self.run(
            input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds, decoder_inputs_embeds,
            deterministic, output_attentions, output_hidden_states,
        )
        return Seq2SeqModelOutput(
            y, None, hidden_states, attentions, cross_attentions, enc.last_hidden_state, enc.hidden_states, enc.attentions
        )


class T5ForConditionalGenerationModule(T5Module):
    """T5 with the LM head: tied to ``shared`` (input scaled by D**-0.5 in the original T5) or an untied ``lm_head``."""

    def setup(self):
        super().setup()
        c = self.config
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=normal(c.initializer_factor))

    def head(self, y):
        """Decoder output [B, T, D] -> logits [B, T, V] float32."""
        c = self.config
        if c.scale_decoder_output():
            y = y * (c.d_model**-0.5)
        logits = self.shared.attend(y) if c.tie_word_embeddings else self.lm_head(y)
        return logits.astype(jnp.float32)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, labels=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        c = self.config
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = shift_right(labels, c.decoder_start_token_id, c.pad_token_id)
        enc, (y, hidden_states, attentions, cross_attentions) = self.run(
            input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds, decoder_inputs_embeds,
            deterministic, output_attentions, output_hidden_states,
        )
        logits = self.head(y)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return Seq2SeqLMOutput(
            loss, logits, None, hidden_states, attentions, cross_attentions, enc.last_hidden_state, enc.hidden_states,
            enc.attentions,
        )

    # -- generation (see fxformers.generation.protocol) ------------------------------------------------------------
    def generation_prefill(self, input_ids, attention_mask, max_length: int, decoder_start_token_id: int):
        """Encode once, precompute cross K/V, allocate the [B, L, N, H] self-attention caches, feed the start token."""
        c = self.config
        encoder_hidden = self.encode(input_ids, attention_mask).last_hidden_state  # [B, S, D]
        b = encoder_hidden.shape[0]
        cross = self.decoder.cross_kv(encoder_hidden)
        zeros = jnp.zeros((b, max_length, c.num_heads, c.d_kv), self.dtype)  # [B, L, N, H]
        state = {
            "cache": tuple({"k": zeros, "v": zeros} for _ in range(c.num_decoder_layers)),
            "cross": tuple({"k": k, "v": v} for k, v in cross),
            "encoder_mask": attention_mask.astype(jnp.int32),
            "index": jnp.zeros((b,), jnp.int32),
        }
        return self.generation_decode(state, jnp.full((b,), decoder_start_token_id, jnp.int32))

    def generation_decode(self, state, tokens):
        """Feed tokens [B] at position state["index"]; returns (logits [B, V] float32, state)."""
        index = state["index"][0]
        length = state["cache"][0]["k"].shape[1] if state["cache"] else 1
        self_mask = (jnp.arange(length) <= index)[None, None, None, :]  # [1, 1, 1, L]
        y, _, _, _, caches = self.decoder(
            self.shared(tokens[:, None]), self_mask, None, padding_mask(state["encoder_mask"]),
            cross_kvs=tuple((layer["k"], layer["v"]) for layer in state["cross"]), caches=state["cache"],
            cache_index=index,
        )
        logits = self.head(y)[:, 0]  # [B, V]
        return logits, {**state, "cache": caches, "index": state["index"] + 1}


# -- public classes --------------------------------------------------------------------------------------------------
from ...modeling import PreTrainedModel  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import MT5Config, T5Config  # noqa: E402
from ..seq2seq import Seq2SeqGenerationMixin, check_seq2seq_inputs  # noqa: E402


class T5PreTrainedModel(PreTrainedModel):
    config_class = T5Config
    base_model_prefix = ""
    vocab_params = ((r"^shared/embedding$", 0), (r"^lm_head/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def dummy_inputs(self):
        ids = jnp.ones((1, 4), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids, "decoder_input_ids": ids}

    def max_input_length(self):
        return None

    def validate_inputs(self, inputs):
        super().validate_inputs(inputs)
        check_seq2seq_inputs(self, inputs)

    @classmethod
    def conversion_table(cls, config):
        return _convert.t5_table(config, decoder=True, lm_head=False)


class T5Model(T5PreTrainedModel):
    module_class = T5Module


class T5EncoderModel(T5PreTrainedModel):
    module_class = T5EncoderModule

    def dummy_inputs(self):
        ids = jnp.ones((1, 4), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}

    @classmethod
    def conversion_table(cls, config):
        return _convert.t5_table(config, decoder=False, lm_head=False)


class T5ForConditionalGeneration(Seq2SeqGenerationMixin, T5PreTrainedModel):
    module_class = T5ForConditionalGenerationModule
    optional_weights = (r"^lm_head/",)  # loading a T5Model checkpoint: a fresh untied head, as in Transformers

    @classmethod
    def conversion_table(cls, config):
        return _convert.t5_table(config, decoder=True, lm_head=True)


class MT5Model(T5Model):
    config_class = MT5Config


class MT5EncoderModel(T5EncoderModel):
    config_class = MT5Config


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = MT5Config
