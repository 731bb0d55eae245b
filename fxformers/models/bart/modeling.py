"""BART (and DistilBART, which is BART with fewer layers): the encoder-decoder, its LM head and the EOS classifier.

Shapes: B batch, T decoder (query) length, S encoder (key) length, L cached decoder positions (generation), D d_model,
N heads, H head dim (D = N * H), F ffn dim, V vocabulary, C labels.

BART in brief: post-norm Transformer layers with biased projections and 1/sqrt(H) attention scaling, token
embeddings shared by encoder, decoder and LM head (optionally scaled by sqrt(D)), learned positions offset by 2,
a LayerNorm right after the embeddings, and a ``final_logits_bias`` added to the LM logits. mBART
(``fxformers.models.mbart``) subclasses the layers here for its pre-norm form.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ...losses import cross_entropy, sequence_classification_loss
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.masks import causal_mask, combine, padding_mask
from ...ops.remat import maybe_remat
from ...outputs import Seq2SeqLMOutput, Seq2SeqModelOutput, Seq2SeqSequenceClassifierOutput, BaseModelOutput

POSITION_OFFSET = 2  # BART's learned position table has 2 extra leading rows (a fairseq legacy)


def shift_tokens_right(input_ids, pad_token_id, decoder_start_token_id):
    """[B, T] -> [B, T]: the start token, then input_ids[:, :-1]; -100 (ignored labels) becomes pad."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is None; set it to shift labels into decoder_input_ids.")
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id is None; set it or pass decoder_input_ids.")
    input_ids = jnp.asarray(input_ids)
    start = jnp.full(input_ids.shape[:-1] + (1,), decoder_start_token_id, input_ids.dtype)
    shifted = jnp.concatenate([start, input_ids[..., :-1]], axis=-1)
    return jnp.where(shifted == -100, pad_token_id, shifted)


def dense(config, features: int, dtype, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.normal(config.init_std), name=name)


def layer_norm(dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, name=name)  # torch.nn.LayerNorm's default epsilon


class BartAttention(nn.Module):
    config: Any
    num_heads: int
    dtype: Any = jnp.float32

    def setup(self):
        d = self.config.d_model
        self.q_proj = dense(self.config, d, self.dtype)
        self.k_proj = dense(self.config, d, self.dtype)
        self.v_proj = dense(self.config, d, self.dtype)
        self.out_proj = dense(self.config, d, self.dtype)

    def project_kv(self, states):
        """states [B, S, D] -> keys, values [B, S, N, H]."""
        b, s, d = states.shape
        shape = (b, s, self.num_heads, d // self.num_heads)
        return self.k_proj(states).reshape(shape), self.v_proj(states).reshape(shape)

    def __call__(self, x, mask, kv_states=None, kv=None, cache=None, cache_index=None, deterministic=True,
                 output_attentions=False):
        """x [B, T, D] -> (out [B, T, D], weights or None, cache or None); see T5Attention for the cache contract."""
        b, t, d = x.shape
        q = self.q_proj(x).reshape(b, t, self.num_heads, d // self.num_heads)  # [B, T, N, H]
        k, v = kv if kv is not None else self.project_kv(x if kv_states is None else kv_states)
        if cache is not None:
            k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, cache_index, 0, 0))  # [B, L, N, H]
            v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, cache_index, 0, 0))
            cache = {"k": k, "v": v}
        rate = self.config.attention_dropout
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(
            q, k, v, mask=mask, dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions
        )
        return self.out_proj(context.reshape(b, t, d)), weights, cache


class BartFeedForward:
    """Mixin of both layer kinds: fc1 -> activation -> dropout -> fc2 -> dropout (submodules set in each setup)."""

    def feed_forward(self, x, deterministic):
        h = self.activation_dropout(self.act(self.fc1(x)), deterministic=deterministic)  # [B, T, F]
        return self.dropout(self.fc2(h), deterministic=deterministic)  # [B, T, D]


class BartEncoderLayer(BartFeedForward, nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.self_attn = BartAttention(c, c.encoder_attention_heads, self.dtype)
        self.self_attn_layer_norm = layer_norm(self.dtype)
        self.fc1 = dense(c, c.encoder_ffn_dim, self.dtype)
        self.fc2 = dense(c, c.d_model, self.dtype)
        self.final_layer_norm = layer_norm(self.dtype)
        self.dropout = nn.Dropout(c.dropout)
        self.activation_dropout = nn.Dropout(c.activation_dropout)
        self.act = get_activation(c.activation_function)

    def __call__(self, x, mask, deterministic=True, output_attentions=False):
        h, weights, _ = self.self_attn(x, mask, deterministic=deterministic, output_attentions=output_attentions)
        x = self.self_attn_layer_norm(x + self.dropout(h, deterministic=deterministic))
        x = self.final_layer_norm(x + self.feed_forward(x, deterministic))
        return x, weights


class BartDecoderLayer(BartFeedForward, nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.self_attn = BartAttention(c, c.decoder_attention_heads, self.dtype)
        self.self_attn_layer_norm = layer_norm(self.dtype)
        self.encoder_attn = BartAttention(c, c.decoder_attention_heads, self.dtype)
        self.encoder_attn_layer_norm = layer_norm(self.dtype)
        self.fc1 = dense(c, c.decoder_ffn_dim, self.dtype)
        self.fc2 = dense(c, c.d_model, self.dtype)
        self.final_layer_norm = layer_norm(self.dtype)
        self.dropout = nn.Dropout(c.dropout)
        self.activation_dropout = nn.Dropout(c.activation_dropout)
        self.act = get_activation(c.activation_function)

    def cross_kv(self, encoder_hidden):
        return self.encoder_attn.project_kv(encoder_hidden)

    def self_attention(self, x, mask, cache, cache_index, deterministic, output_attentions):
        return self.self_attn(x, mask, cache=cache, cache_index=cache_index, deterministic=deterministic,
                              output_attentions=output_attentions)

    def cross_attention(self, x, encoder_hidden, encoder_mask, kv, deterministic, output_attentions):
        return self.encoder_attn(x, encoder_mask, kv_states=encoder_hidden, kv=kv, deterministic=deterministic,
                                 output_attentions=output_attentions)

    def __call__(self, x, mask, encoder_hidden, encoder_mask, cross_kv=None, cache=None, cache_index=None,
                 deterministic=True, output_attentions=False):
        h, self_weights, cache = self.self_attention(x, mask, cache, cache_index, deterministic, output_attentions)
        x = self.self_attn_layer_norm(x + self.dropout(h, deterministic=deterministic))
        h, cross_weights, _ = self.cross_attention(x, encoder_hidden, encoder_mask, cross_kv, deterministic, output_attentions)
        x = self.encoder_attn_layer_norm(x + self.dropout(h, deterministic=deterministic))
        x = self.final_layer_norm(x + self.feed_forward(x, deterministic))
        return x, self_weights, cross_weights, cache


class BartEncoder(nn.Module):
    """Positions + layernorm_embedding + the encoder layers (the token embedding is the shared one, passed in)."""

    config: Any
    dtype: Any = jnp.float32
    layer_class: ClassVar[type] = BartEncoderLayer

    def setup(self):
        c = self.config
        self.embed_positions = nn.Embed(c.max_position_embeddings + POSITION_OFFSET, c.d_model, dtype=self.dtype,
                                        embedding_init=nn.initializers.normal(c.init_std))
        self.layernorm_embedding = layer_norm(self.dtype)
        self.layers = [maybe_remat(self.layer_class, c)(c, self.dtype) for _ in range(c.encoder_layers)]
        self.dropout = nn.Dropout(c.dropout)

    def finish(self, x):
        """Applied to the last layer's output (identity for BART; mBART's final layer_norm)."""
        return x

    def __call__(self, embeds, mask, deterministic=True, output_attentions=False, output_hidden_states=False):
        s = embeds.shape[1]
        x = embeds + self.embed_positions(jnp.arange(s)[None, :] + POSITION_OFFSET)  # [B, S, D]
        x = self.dropout(self.layernorm_embedding(x), deterministic=deterministic)
        hidden_states, attentions = (), ()
        for layer in self.layers:
            hidden_states += (x,)
            x, weights = layer(x, mask, deterministic, output_attentions)
            attentions += (weights,)
        x = self.finish(x)
        hidden_states += (x,)
        return BaseModelOutput(x, hidden_states if output_hidden_states else None, attentions if output_attentions else None)


class BartDecoder(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    layer_class: ClassVar[type] = BartDecoderLayer

    def setup(self):
        c = self.config
        self.embed_positions = nn.Embed(c.max_position_embeddings + POSITION_OFFSET, c.d_model, dtype=self.dtype,
                                        embedding_init=nn.initializers.normal(c.init_std))
        self.layernorm_embedding = layer_norm(self.dtype)
        self.layers = [maybe_remat(self.layer_class, c)(c, self.dtype) for _ in range(c.decoder_layers)]
        self.dropout = nn.Dropout(c.dropout)

    def finish(self, x):
        return x

    def cross_kv(self, encoder_hidden):
        return tuple(layer.cross_kv(encoder_hidden) for layer in self.layers)

    def __call__(self, embeds, mask, encoder_hidden, encoder_mask, cross_kvs=None, caches=None, cache_index=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        """embeds [B, T, D] -> (last hidden, hidden states, self attentions, cross attentions, caches)."""
        t = embeds.shape[1]
        offset = 0 if cache_index is None else cache_index
        x = embeds + self.embed_positions(jnp.arange(t)[None, :] + offset + POSITION_OFFSET)  # [B, T, D]
        x = self.dropout(self.layernorm_embedding(x), deterministic=deterministic)
        hidden_states, attentions, cross_attentions, new_caches = (), (), (), ()
        for i, layer in enumerate(self.layers):
            hidden_states += (x,)
            x, weights, cross_weights, cache = layer(
                x, mask, encoder_hidden, encoder_mask, None if cross_kvs is None else cross_kvs[i],
                None if caches is None else caches[i], cache_index, deterministic, output_attentions,
            )
            attentions += (weights,)
            cross_attentions += (cross_weights,)
            new_caches += (cache,)
        x = self.finish(x)
        hidden_states += (x,)
        return (
            x,
            hidden_states if output_hidden_states else None,
            attentions if output_attentions else None,
            cross_attentions if output_attentions else None,
            new_caches if caches is not None else None,
        )


class BartModule(nn.Module):
    """BartModel: shared embedding, encoder, decoder. Without decoder inputs the decoder reads input_ids shifted."""

    config: Any
    dtype: Any = jnp.float32
    encoder_class: ClassVar[type] = BartEncoder
    decoder_class: ClassVar[type] = BartDecoder

    def setup(self):
        c = self.config
        self.shared = nn.Embed(c.vocab_size, c.d_model, dtype=self.dtype, embedding_init=nn.initializers.normal(c.init_std))
        self.encoder = self.encoder_class(c, self.dtype)
        self.decoder = self.decoder_class(c, self.dtype)

    def embed(self, ids, embeds):
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        return self.shared(ids) * scale if embeds is None else embeds.astype(self.dtype)  # [B, T, D]

    def default_decoder_input_ids(self, input_ids):
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, deterministic=True,
               output_attentions=False, output_hidden_states=False):
        x = self.embed(input_ids, inputs_embeds)
        mask = None if attention_mask is None else padding_mask(attention_mask)
        return self.encoder(x, mask, deterministic, output_attentions, output_hidden_states)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("Pass decoder_input_ids (or decoder_inputs_embeds), or input_ids to shift.")
            decoder_input_ids = self.default_decoder_input_ids(input_ids)
        enc = self.encode(input_ids, attention_mask, inputs_embeds, deterministic, output_attentions, output_hidden_states)
        y = self.embed(decoder_input_ids, decoder_inputs_embeds)  # [B, T, D]
        t = y.shape[1]
        self_mask = combine(causal_mask(t, t), None if decoder_attention_mask is None else padding_mask(decoder_attention_mask))
        encoder_mask = None if attention_mask is None else padding_mask(attention_mask)
        y, hidden_states, attentions, cross_attentions, _ = self.decoder(
            y, self_mask, enc.last_hidden_state, encoder_mask, deterministic=deterministic,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        return Seq2SeqModelOutput(
            y, None, hidden_states, attentions, cross_attentions, enc.last_hidden_state, enc.hidden_states, enc.attentions
        )


class BartHead(nn.Module):
    """Base of the task modules: the BartModule under the checkpoint name ``model``."""

    config: Any
    dtype: Any = jnp.float32
    base_class: ClassVar[type] = BartModule

    def setup(self):
        self.model = self.base_class(self.config, self.dtype)


class BartForConditionalGenerationModule(BartHead):
    def setup(self):
        super().setup()
        c = self.config
        self.final_logits_bias = self.param("final_logits_bias", nn.initializers.zeros, (1, c.vocab_size))
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype,
                                    kernel_init=nn.initializers.normal(c.init_std))

    def head(self, y):
        """Decoder output [B, T, D] -> logits [B, T, V] float32."""
        logits = self.model.shared.attend(y) if self.config.tie_word_embeddings else self.lm_head(y)
        return logits.astype(jnp.float32) + self.final_logits_bias.astype(jnp.float32)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, labels=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        c = self.config
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.model.default_decoder_input_ids(labels)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds,
                         decoder_inputs_embeds, deterministic, output_attentions, output_hidden_states)
        logits = self.head(out.last_hidden_state)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, c.vocab_size), labels.reshape(-1))
        return Seq2SeqLMOutput(
            loss, logits, None, out.decoder_hidden_states, out.decoder_attentions, out.cross_attentions,
            out.encoder_last_hidden_state, out.encoder_hidden_states, out.encoder_attentions,
        )

    # -- generation (see fxformers.generation.protocol) ------------------------------------------------------------
    def generation_prefill(self, input_ids, attention_mask, max_length: int, decoder_start_token_id: int):
        c = self.config
        encoder_hidden = self.model.encode(input_ids, attention_mask).last_hidden_state  # [B, S, D]
        b = encoder_hidden.shape[0]
        heads = c.decoder_attention_heads
        zeros = jnp.zeros((b, max_length, heads, c.d_model // heads), self.dtype)  # [B, L, N, H]
        state = {
            "cache": tuple({"k": zeros, "v": zeros} for _ in range(c.decoder_layers)),
            "cross": tuple({"k": k, "v": v} for k, v in self.model.decoder.cross_kv(encoder_hidden)),
            "encoder_mask": attention_mask.astype(jnp.int32),
            "index": jnp.zeros((b,), jnp.int32),
        }
        return self.generation_decode(state, jnp.full((b,), decoder_start_token_id, jnp.int32))

    def generation_decode(self, state, tokens):
        index = state["index"][0]
        length = state["cache"][0]["k"].shape[1]
        self_mask = (jnp.arange(length) <= index)[None, None, None, :]  # [1, 1, 1, L]
        y, _, _, _, caches = self.model.decoder(
            self.model.embed(tokens[:, None], None), self_mask, None, padding_mask(state["encoder_mask"]),
            cross_kvs=tuple((layer["k"], layer["v"]) for layer in state["cross"]), caches=state["cache"],
            cache_index=index,
        )
        return self.head(y)[:, 0], {**state, "cache": caches, "index": state["index"] + 1}


class BartClassificationHead(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic=True):
        c = self.config
        drop = nn.Dropout(c.classifier_dropout or 0.0)
        x = jnp.tanh(dense(c, c.d_model, self.dtype, name="dense")(drop(x, deterministic=deterministic)))
        return dense(c, c.num_labels, self.dtype, name="out_proj")(drop(x, deterministic=deterministic))  # [B, C]


class BartForSequenceClassificationModule(BartHead):
    """Classifies from the decoder state at each row's last EOS token (the decoder reads input_ids shifted right)."""

    def setup(self):
        super().setup()
        self.classification_head = BartClassificationHead(self.config, self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, labels=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        if input_ids is None:
            raise NotImplementedError("BartForSequenceClassification needs input_ids (EOS positions pool the output).")
        c = self.config
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds,
                         decoder_inputs_embeds, deterministic, output_attentions, output_hidden_states)
        h = out.last_hidden_state  # [B, T, D]
        is_eos = input_ids == c.eos_token_id  # [B, T]
        last_eos = h.shape[1] - 1 - jnp.argmax(is_eos[:, ::-1], axis=1)  # [B]
        pooled = jnp.take_along_axis(h, last_eos[:, None, None], axis=1)[:, 0]  # [B, D]
        logits = self.classification_head(pooled, deterministic).astype(jnp.float32)
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return Seq2SeqSequenceClassifierOutput(
            loss, logits, None, out.decoder_hidden_states, out.decoder_attentions, out.cross_attentions,
            out.encoder_last_hidden_state, out.encoder_hidden_states, out.encoder_attentions,
        )


# -- public classes --------------------------------------------------------------------------------------------------
from ...modeling import PreTrainedModel  # noqa: E402
from ..seq2seq import Seq2SeqGenerationMixin, check_seq2seq_inputs  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import BartConfig  # noqa: E402


class BartPreTrainedModel(PreTrainedModel):
    config_class = BartConfig
    base_model_prefix = "model"
    has_base_prefix = True
    vocab_params = ((r"shared/embedding$", 0), (r"^final_logits_bias$", 1), (r"^lm_head/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def dummy_inputs(self):
        ids = jnp.full((1, 4), 2, jnp.int32)  # all EOS: valid for the EOS-pooling head too
        return {"input_ids": ids, "attention_mask": jnp.ones((1, 4), jnp.int32), "decoder_input_ids": ids}

    def validate_inputs(self, inputs):
        super().validate_inputs(inputs)
        check_seq2seq_inputs(self, inputs)
        dec = inputs.get("decoder_input_ids")
        limit = self.config.max_position_embeddings
        if dec is not None and dec.shape[-1] > limit:
            raise ValueError(f"decoder_input_ids has length {dec.shape[-1]}, longer than max_position_embeddings={limit}.")

    def generation_max_positions(self) -> int:
        return self.config.max_position_embeddings

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config).prefixed("model.", "model/")


class BartModel(BartPreTrainedModel):
    module_class = BartModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config)


class BartForConditionalGeneration(Seq2SeqGenerationMixin, BartPreTrainedModel):
    module_class = BartForConditionalGenerationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.lm_table(config)


class BartForSequenceClassification(BartPreTrainedModel):
    module_class = BartForSequenceClassificationModule

    def validate_inputs(self, inputs):
        super().validate_inputs(inputs)
        ids = inputs.get("input_ids")
        if ids is not None:
            counts = (np.asarray(ids) == self.config.eos_token_id).sum(axis=1)
            if counts.min() == 0:
                raise ValueError(f"Each example must contain at least one <eos> token (eos_token_id={self.config.eos_token_id}).")
            if len(np.unique(counts)) > 1:
                raise ValueError("All examples must have the same number of <eos> tokens.")

    @classmethod
    def conversion_table(cls, config):
        return _convert.classification_table(config)
