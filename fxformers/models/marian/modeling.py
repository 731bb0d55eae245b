"""Marian (opus-mt): BART's post-norm layers with sinusoidal positions, no embedding LayerNorm, and source and
target vocabularies that may be separate.

Shapes as in :mod:`fxformers.models.bart.modeling`: B batch, T decoder length, S encoder length, L cached decoder
positions, D d_model, V source vocabulary, W target vocabulary (V unless ``share_encoder_decoder_embeddings`` is
false), P max_position_embeddings.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ...losses import cross_entropy
from ...ops.masks import causal_mask, combine, padding_mask
from ...outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from ..bart.modeling import (
    BartDecoder,
    BartDecoderLayer,
    BartEncoder,
    BartEncoderLayer,
    BartForConditionalGenerationModule,
    BartModule,
    shift_tokens_right,
)


@functools.lru_cache(maxsize=8)
def sinusoidal_table(num_positions: int, dim: int) -> np.ndarray:
    """[P, D] float32, as Transformers' MarianSinusoidalPositionalEmbedding: float64 angles, sines in the first
    half of the features and cosines in the second (not interleaved)."""
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angles = pos / np.power(10000, 2 * (j // 2) / dim)[None, :]  # [P, D]
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out = np.empty((num_positions, dim), np.float32)
    out[:, :sentinel] = np.sin(angles[:, 0::2]).astype(np.float32)
    out[:, sentinel:] = np.cos(angles[:, 1::2]).astype(np.float32)
    return out


def positions(config, start, length: int, dtype):
    """Rows ``start .. start + length - 1`` of the sinusoidal table -> [1, T, D]."""
    table = jnp.asarray(sinusoidal_table(config.max_position_embeddings, config.d_model))
    return jnp.take(table, jnp.arange(length) + start, axis=0)[None].astype(dtype)


class MarianEncoder(BartEncoder):
    """Sinusoidal positions + the encoder layers; no embedding LayerNorm."""

    def setup(self):
        c = self.config
        self.layers = [BartEncoderLayer(c, self.dtype) for _ in range(c.encoder_layers)]
        self.dropout = nn.Dropout(c.dropout)

    def __call__(self, embeds, mask, deterministic=True, output_attentions=False, output_hidden_states=False):
        x = embeds + positions(self.config, 0, embeds.shape[1], self.dtype)  # [B, S, D]
        x = self.dropout(x, deterministic=deterministic)
        hidden_states, attentions = (), ()
        for layer in self.layers:
            hidden_states += (x,)
            x, weights = layer(x, mask, deterministic, output_attentions)
            attentions += (weights,)
        hidden_states += (x,)
        return BaseModelOutput(x, hidden_states if output_hidden_states else None, attentions if output_attentions else None)


class MarianDecoder(BartDecoder):
    def setup(self):
        c = self.config
        self.layers = [BartDecoderLayer(c, self.dtype) for _ in range(c.decoder_layers)]
        self.dropout = nn.Dropout(c.dropout)

    def __call__(self, embeds, mask, encoder_hidden, encoder_mask, cross_kvs=None, caches=None, cache_index=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        """embeds [B, T, D] -> (last hidden, hidden states, self attentions, cross attentions, caches)."""
        offset = 0 if cache_index is None else cache_index
        x = embeds + positions(self.config, offset, embeds.shape[1], self.dtype)  # [B, T, D]
        x = self.dropout(x, deterministic=deterministic)
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
        hidden_states += (x,)
        return (
            x,
            hidden_states if output_hidden_states else None,
            attentions if output_attentions else None,
            cross_attentions if output_attentions else None,
            new_caches if caches is not None else None,
        )


class MarianModule(BartModule):
    """MarianModel: the token embeddings (one ``shared`` table, or one per side: see
    ``MarianConfig.one_embedding_table``), encoder, decoder.

    ``embed`` is the decoder side (BART's generation code calls it for each new token); ``encode`` embeds the source.
    """

    def setup(self):
        c = self.config
        table = lambda n, name: nn.Embed(n, c.d_model, dtype=self.dtype, embedding_init=nn.initializers.normal(c.init_std), name=name)
        if c.share_encoder_decoder_embeddings:
            self.shared = table(c.vocab_size, "shared")
        if not c.one_embedding_table():
            self.encoder_embed_tokens = table(c.vocab_size, "encoder_embed_tokens")
            self.decoder_embed_tokens = table(c.target_vocab_size(), "decoder_embed_tokens")
        self.encoder = MarianEncoder(c, self.dtype)
        self.decoder = MarianDecoder(c, self.dtype)

    def embed_scale(self) -> float:
        return math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0

    def source_embeddings(self) -> nn.Embed:
        return self.shared if self.config.one_embedding_table() else self.encoder_embed_tokens

    def target_embeddings(self) -> nn.Embed:
        return self.shared if self.config.one_embedding_table() else self.decoder_embed_tokens

    def embed(self, ids, embeds):
        """Decoder inputs -> [B, T, D]; Marian scales given decoder_inputs_embeds too."""
        x = self.target_embeddings()(ids) if embeds is None else embeds.astype(self.dtype)
        return x * self.embed_scale()

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, deterministic=True,
               output_attentions=False, output_hidden_states=False):
        """Source -> encoder output; given inputs_embeds are used unscaled (as Transformers does)."""
        if self.config.share_encoder_decoder_embeddings and not self.config.one_embedding_table():
            self.shared(jnp.zeros((1, 1), jnp.int32))  # unused, but created so the checkpoint round-trips
        x = self.source_embeddings()(input_ids) * self.embed_scale() if inputs_embeds is None else inputs_embeds.astype(self.dtype)
        mask = None if attention_mask is None else padding_mask(attention_mask)
        return self.encoder(x, mask, deterministic, output_attentions, output_hidden_states)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("MarianModel needs decoder_input_ids (or decoder_inputs_embeds); it does not shift "
                             "input_ids. Pass labels to MarianMTModel to derive them.")
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


class MarianMTModelModule(BartForConditionalGenerationModule):
    """The LM head over the target vocabulary W (tied to the target embeddings, or untied) + final_logits_bias;
    BART's generation protocol (prefill / decode) unchanged."""

    base_class = MarianModule

    def setup(self):
        c = self.config
        self.model = MarianModule(c, self.dtype)
        self.final_logits_bias = self.param("final_logits_bias", nn.initializers.zeros, (1, c.target_vocab_size()))
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(c.target_vocab_size(), use_bias=False, dtype=self.dtype,
                                    kernel_init=nn.initializers.normal(c.init_std))

    def head(self, y):
        """Decoder output [B, T, D] -> logits [B, T, W] float32."""
        logits = self.model.target_embeddings().attend(y) if self.config.tie_word_embeddings else self.lm_head(y)
        return logits.astype(jnp.float32) + self.final_logits_bias.astype(jnp.float32)

    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                 inputs_embeds=None, decoder_inputs_embeds=None, labels=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        c = self.config
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = shift_tokens_right(labels, c.pad_token_id, c.decoder_start_token_id)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, inputs_embeds,
                         decoder_inputs_embeds, deterministic, output_attentions, output_hidden_states)
        logits = self.head(out.last_hidden_state)  # [B, T, W]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return Seq2SeqLMOutput(
            loss, logits, None, out.decoder_hidden_states, out.decoder_attentions, out.cross_attentions,
            out.encoder_last_hidden_state, out.encoder_hidden_states, out.encoder_attentions,
        )


# -- public classes --------------------------------------------------------------------------------------------------
from ..bart.modeling import BartPreTrainedModel  # noqa: E402
from ..seq2seq import Seq2SeqGenerationMixin, check_seq2seq_inputs  # noqa: E402
from ...modeling import PreTrainedModel, check_ids  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import MarianConfig  # noqa: E402


class MarianPreTrainedModel(BartPreTrainedModel):
    config_class = MarianConfig
    vocab_params = ((r"(shared|encoder_embed_tokens)/embedding$", 0),)  # the source vocabulary

    def dummy_inputs(self):
        ids = jnp.zeros((1, 4), jnp.int32)
        return {"input_ids": ids, "attention_mask": jnp.ones((1, 4), jnp.int32), "decoder_input_ids": ids}

    def validate_inputs(self, inputs):
        PreTrainedModel.validate_inputs(self, inputs)
        target = self.config.target_vocab_size()
        dec = inputs.get("decoder_input_ids")
        if dec is not None:
            check_ids(dec, "decoder_input_ids", target)
        labels = inputs.get("labels")
        if labels is not None:
            check_seq2seq_inputs(self, {"labels": labels})  # -100 allowed
            if np.asarray(labels).max() >= target:
                raise ValueError(f"labels hold {np.asarray(labels).max()}, outside the target vocabulary [0, {target}).")
        limit = self.config.max_position_embeddings
        if dec is not None and dec.shape[-1] > limit:
            raise ValueError(f"decoder_input_ids has length {dec.shape[-1]}, longer than max_position_embeddings={limit}.")

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config).prefixed("model.", "model/")


class MarianModel(MarianPreTrainedModel):
    module_class = MarianModule
    has_base_prefix = False

    def state_dict(self, lazy: bool = False) -> dict:
        """Plus the sinusoidal tables: Transformers saves them with MarianModel (and requires them back when
        loading it), though not with MarianMTModel."""
        out = super().state_dict(lazy=lazy)
        table = sinusoidal_table(self.config.max_position_embeddings, self.config.d_model)
        out.update({f"{side}.embed_positions.weight": table.copy() for side in ("encoder", "decoder")})
        return out

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config)


class MarianMTModel(Seq2SeqGenerationMixin, MarianPreTrainedModel):
    module_class = MarianMTModelModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.lm_table(config)
