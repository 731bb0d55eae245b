"""DeBERTa-v2/v3: disentangled attention. Scores add, to content-to-content q.k, content-to-position (c2p: queries
against embedded relative distances) and position-to-content (p2c: keys against them) terms, with relative distances
optionally folded into log buckets; v2's convolution beside the first layer; factorised embeddings.

Shapes: B batch, C choices, T query length, S key length (S = T), D hidden size, E embedding size, N heads,
H head dim, A attention span (relative distances are embedded in 2A rows), V vocabulary, L labels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ...losses import cross_entropy, mse, sequence_classification_loss, span_loss
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


def dense(config, features: int, dtype, name: str | None = None, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


def layer_norm(config, dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


# -- relative positions (host-side constants: the sequence length is static under jit) -------------------------------
def log_bucket_positions(relative: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
    """Transformers' make_log_bucket_position in float32: distances under bucket_size // 2 stay exact, longer
    ones share logarithmically wider buckets up to max_position."""
    sign = np.sign(relative)
    mid = bucket_size // 2
    abs_pos = np.where((relative < mid) & (relative > -mid), mid - 1, np.abs(relative))
    ratio = abs_pos.astype(np.float32) / np.float32(mid)
    log_pos = np.ceil(np.log(ratio) / np.log(np.float32((max_position - 1) / mid)) * np.float32(mid - 1)) + np.float32(mid)
    return np.where(abs_pos <= mid, relative.astype(np.float32), log_pos * sign).astype(np.int64)


def relative_positions(length: int, bucket_size: int = -1, max_position: int = -1) -> np.ndarray:
    """[T, T] query position minus key position, bucketed when both sizes are set."""
    ids = np.arange(length)
    relative = ids[:, None] - ids[None, :]
    if bucket_size > 0 and max_position > 0:
        relative = log_bucket_positions(relative, bucket_size, max_position)
    return relative


# -- modules ----------------------------------------------------------------------------------------------------------
class DebertaV2Embeddings(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        embed = lambda num: nn.Embed(num, c.embedding_width, dtype=self.dtype, embedding_init=init)
        self.word_embeddings = embed(c.vocab_size)
        if c.position_biased_input:
            self.position_embeddings = embed(c.max_position_embeddings)
        if c.type_vocab_size > 0:
            self.token_type_embeddings = embed(c.type_vocab_size)
        if c.embedding_width != c.hidden_size:
            self.embed_proj = dense(c, c.hidden_size, self.dtype, use_bias=False)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, position_ids, mask, inputs_embeds=None, deterministic=True):
        c = self.config
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, E]
        if c.position_biased_input:
            if position_ids is None:
                position_ids = jnp.arange(x.shape[1])[None, :]  # [1, T]
            x = x + self.position_embeddings(position_ids)
        if c.type_vocab_size > 0:
            if token_type_ids is None:
                token_type_ids = jnp.zeros(x.shape[:2], jnp.int32)
            x = x + self.token_type_embeddings(token_type_ids)
        if c.embedding_width != c.hidden_size:
            x = self.embed_proj(x)  # [B, T, D]
        x = self.LayerNorm(x) * mask[..., None].astype(self.dtype)  # padding positions are zeroed
        return self.dropout(x, deterministic=deterministic)


class DisentangledSelfAttention(nn.Module):
    """DeBERTa's attention and its output block (dense, dropout, residual LayerNorm)."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        width = c.num_attention_heads * c.head_dim
        self.query_proj = dense(c, width, self.dtype)
        self.key_proj = dense(c, width, self.dtype)
        self.value_proj = dense(c, width, self.dtype)
        if c.relative_attention and not c.share_att_key:
            if "c2p" in c.pos_att:
                self.pos_key_proj = dense(c, width, self.dtype)
            if "p2c" in c.pos_att:
                self.pos_query_proj = dense(c, width, self.dtype)
        self.pos_dropout = nn.Dropout(c.hidden_dropout_prob)
        self.dense = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def heads(self, x):
        return x.reshape(x.shape[:-1] + (self.config.num_attention_heads, self.config.head_dim))  # [..., N, H]

    def __call__(self, x, mask, relative_pos, rel_embeddings, deterministic=True, output_attentions=False):
        c = self.config
        b, t, _ = x.shape
        q, k, v = self.heads(self.query_proj(x)), self.heads(self.key_proj(x)), self.heads(self.value_proj(x))  # [B, T, N, H]
        # every score term is divided by sqrt(H * (1 + number of position terms)), in float32 as Transformers does
        scale = np.sqrt(np.float32(c.head_dim) * np.float32(1 + len(c.pos_att)), dtype=np.float32)
        bias = None
        if c.relative_attention:
            bias = self.relative_scores(q, k, relative_pos, rel_embeddings, scale, deterministic)  # [B, N, T, S]
        rate = c.attention_probs_dropout_prob
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(q, k, v, mask=mask, bias=bias, scale=float(1.0 / scale),
                                                 dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions)
        out = self.dropout(self.dense(context.reshape(b, t, -1)), deterministic=deterministic)  # [B, T, D]
        return self.LayerNorm(out + x), weights

    def relative_scores(self, q, k, relative_pos, rel_embeddings, scale, deterministic):
        """The c2p and p2c terms [B, N, T, S] from the relative embeddings [2A, D] and positions [T, S]."""
        c = self.config
        span = c.attention_span
        rel = self.pos_dropout(rel_embeddings[: 2 * span], deterministic=deterministic)  # [2A, D]
        if c.share_att_key:
            pos_query = self.heads(self.query_proj(rel)) if "p2c" in c.pos_att else None  # [2A, N, H]
            pos_key = self.heads(self.key_proj(rel)) if "c2p" in c.pos_att else None
        else:
            pos_key = self.heads(self.pos_key_proj(rel)) if "c2p" in c.pos_att else None
            pos_query = self.heads(self.pos_query_proj(rel)) if "p2c" in c.pos_att else None
        b, t, n, _ = q.shape
        score = jnp.zeros((b, n, t, t), jnp.float32)
        if "c2p" in c.pos_att:
            c2p = jnp.einsum("btnh,pnh->bntp", q, pos_key, preferred_element_type=jnp.float32)  # [B, N, T, 2A]
            index = np.clip(relative_pos + span, 0, 2 * span - 1)  # [T, S]: the embedding row of distance t - s
            c2p = jnp.take_along_axis(c2p, jnp.broadcast_to(index, (b, n, t, t)), axis=-1)  # [B, N, T, S]
            score = score + c2p / scale
        if "p2c" in c.pos_att:
            p2c = jnp.einsum("bsnh,pnh->bnsp", k, pos_query, preferred_element_type=jnp.float32)  # [B, N, S, 2A]
            index = np.clip(-relative_pos + span, 0, 2 * span - 1)  # [S, T]: the row of distance -(s - t)
            p2c = jnp.take_along_axis(p2c, jnp.broadcast_to(index, (b, n, t, t)), axis=-1)  # [B, N, S, T]
            score = score + jnp.swapaxes(p2c, -1, -2) / scale  # [B, N, T, S]
        return score


class DebertaV2Layer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.attention = DisentangledSelfAttention(c, self.dtype)
        self.intermediate = dense(c, c.intermediate_size, self.dtype)
        self.output = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.act = get_activation(c.hidden_act)

    def __call__(self, x, mask, relative_pos, rel_embeddings, deterministic=True, output_attentions=False):
        x, weights = self.attention(x, mask, relative_pos, rel_embeddings, deterministic, output_attentions)
        h = self.output(self.act(self.intermediate(x)))  # [B, T, F] -> [B, T, D]
        return self.LayerNorm(self.dropout(h, deterministic=deterministic) + x), weights


class ConvLayer(nn.Module):
    """DeBERTa-v2's convolution over the embeddings, added to the first layer's output."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        pad = (c.conv_kernel_size - 1) // 2
        self.conv = nn.Conv(c.hidden_size, (c.conv_kernel_size,), padding=[(pad, pad)],
                            feature_group_count=c.conv_groups, dtype=self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def __call__(self, x, residual, input_mask, deterministic=True):
        keep = input_mask[..., None].astype(self.dtype)  # [B, T, 1]
        out = jnp.where(keep > 0, self.conv(x), 0.0)  # [B, T, D]; channels-last, so no transposes
        out = get_activation(self.config.conv_act)(self.dropout(out, deterministic=deterministic))
        return self.LayerNorm(residual + out) * keep


class DebertaV2Encoder(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.layer = [DebertaV2Layer(c, self.dtype) for _ in range(c.num_hidden_layers)]
        if c.relative_attention:
            self.rel_embeddings = nn.Embed(2 * c.attention_span, c.hidden_size, dtype=self.dtype,
                                           embedding_init=nn.initializers.normal(c.initializer_range))
        if "layer_norm" in c.norm_rel_ebd_types:
            self.LayerNorm = layer_norm(c, self.dtype)
        if c.conv_kernel_size > 0:
            self.conv = ConvLayer(c, self.dtype)

    def relative_embeddings(self):
        c = self.config
        if not c.relative_attention:
            return None
        rel = self.rel_embeddings.embedding.astype(self.dtype)  # [2A, D]
        return self.LayerNorm(rel) if "layer_norm" in c.norm_rel_ebd_types else rel

    def __call__(self, x, attention_mask, deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        keep = attention_mask.astype(bool)
        mask = keep[:, None, :, None] & keep[:, None, None, :]  # [B, 1, T, S]: padded queries attend nowhere
        relative_pos = relative_positions(x.shape[1], c.position_buckets, c.relative_positions) if c.relative_attention else None
        rel_embeddings = self.relative_embeddings()
        hidden_states, attentions, h = (x,), (), x
        for i, layer in enumerate(self.layer):
            h, weights = layer(h, mask, relative_pos, rel_embeddings, deterministic, output_attentions)
            if i == 0 and c.conv_kernel_size > 0:
                h = self.conv(x, h, attention_mask, deterministic)
            hidden_states += (h,)
            attentions += (weights,)
        return h, (hidden_states if output_hidden_states else None), (attentions if output_attentions else None)


class DebertaV2Module(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.embeddings = DebertaV2Embeddings(self.config, self.dtype)
        self.encoder = DebertaV2Encoder(self.config, self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        shape = (input_ids if input_ids is not None else inputs_embeds[..., 0]).shape
        if attention_mask is None:
            attention_mask = jnp.ones(shape, jnp.int32)
        x = self.embeddings(input_ids, token_type_ids, position_ids, attention_mask, inputs_embeds, deterministic)
        x, hidden_states, attentions = self.encoder(x, attention_mask, deterministic, output_attentions, output_hidden_states)
        return BaseModelOutput(x, hidden_states, attentions)


# -- task heads -------------------------------------------------------------------------------------------------------
class DebertaV2Head(nn.Module):
    """Base of the task heads: runs the encoder under ``deberta``."""

    config: Any
    dtype: Any = jnp.float32

    def encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
               output_attentions, output_hidden_states):
        return DebertaV2Module(self.config, self.dtype, name="deberta")(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic, output_attentions,
            output_hidden_states)

    def pool(self, x, deterministic):
        """ContextPooler on the first token, then the classifier dropout (cls_dropout or hidden_dropout_prob)."""
        c = self.config
        x = nn.Dropout(c.pooler_dropout)(x[:, 0], deterministic=deterministic)  # [B, D]
        x = get_activation(c.pooler_hidden_act)(dense(c, c.pooler_width, self.dtype, name="pooler")(x))
        rate = c.cls_dropout if c.cls_dropout is not None else c.hidden_dropout_prob
        return nn.Dropout(rate)(x, deterministic=deterministic)


def deberta_classification_loss(logits, labels, num_labels: int, problem_type):
    """DebertaV2ForSequenceClassification's loss: with no problem_type, one label is regression, integer labels
    ignore negative ones (loss 0 when none is left), and [B, L] labels are soft targets."""
    if problem_type is not None:
        return sequence_classification_loss(logits, labels, num_labels, problem_type)
    if num_labels == 1:
        return mse(logits.reshape(-1), labels.reshape(-1))
    if labels.ndim == 1 or labels.shape[-1] == 1:
        labels = labels.reshape(-1).astype(jnp.int32)
        valid = labels >= 0
        per_row = -jnp.take_along_axis(jax_log_softmax(logits), jnp.where(valid, labels, 0)[:, None], axis=-1)[:, 0]
        count = valid.sum()
        return jnp.where(count > 0, jnp.where(valid, per_row, 0.0).sum() / jnp.maximum(count, 1), 0.0)
    return -(jax_log_softmax(logits) * labels).sum(-1).mean()


def jax_log_softmax(x):
    return jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)


class DebertaV2ForSequenceClassificationModule(DebertaV2Head):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = self.pool(out.last_hidden_state, deterministic)
        logits = dense(c, c.num_labels, self.dtype, name="classifier")(x).astype(jnp.float32)  # [B, L]
        loss = None if labels is None else deberta_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class DebertaV2ForTokenClassificationModule(DebertaV2Head):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = nn.Dropout(c.hidden_dropout_prob)(out.last_hidden_state, deterministic=deterministic)
        logits = dense(c, c.num_labels, self.dtype, name="classifier")(x).astype(jnp.float32)  # [B, T, L]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class DebertaV2ForQuestionAnsweringModule(DebertaV2Head):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 start_positions=None, end_positions=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        logits = dense(self.config, self.config.num_labels, self.dtype, name="qa_outputs")(out.last_hidden_state)
        start, end = logits[..., 0].astype(jnp.float32), logits[..., 1].astype(jnp.float32)  # [B, T] each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions)


class DebertaV2ForMultipleChoiceModule(DebertaV2Head):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        b, num_choices = ref.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * num_choices,) + a.shape[2:])  # [B, C, T] -> [B*C, T]
        out = self.encode(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                          flat(inputs_embeds), deterministic, output_attentions, output_hidden_states)
        x = self.pool(out.last_hidden_state, deterministic)
        logits = dense(self.config, 1, self.dtype, name="classifier")(x).reshape(b, num_choices).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class DebertaV2ForMaskedLMModule(DebertaV2Head):
    """legacy (cls.predictions): transform to E, then the decoder tied to the word embeddings (or untied, with its
    own bias); otherwise (lm_predictions): transform at D, then the word embeddings. Both add ``bias``."""

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        width = c.embedding_width if c.legacy else c.hidden_size
        x = get_activation(c.hidden_act)(dense(c, width, self.dtype, name="transform_dense")(out.last_hidden_state))
        x = layer_norm(c, self.dtype, name="transform_LayerNorm")(x)  # [B, T, E]
        bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,))
        if c.legacy and not c.tie_word_embeddings:  # the untied decoder adds its own bias; ``bias`` is stored only
            logits = nn.Dense(c.vocab_size, dtype=self.dtype, name="decoder")(x)
        else:
            embeddings = self.variables["params"]["deberta"]["embeddings"]["word_embeddings"]["embedding"]
            logits = x @ embeddings.astype(self.dtype).T + bias.astype(self.dtype)  # [B, T, V]
        logits = logits.astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ---------------------------------------------------------------------------------------------------
from ...modeling import PreTrainedModel  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import DebertaV2Config  # noqa: E402


class DebertaV2PreTrainedModel(PreTrainedModel):
    config_class = DebertaV2Config
    base_model_prefix = "deberta"
    has_base_prefix = True
    vocab_params = ((r"word_embeddings/embedding$", 0), (r"^bias$", 0), (r"^decoder/kernel$", 1), (r"^decoder/bias$", 0))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def max_input_length(self):
        # without absolute positions (DeBERTa-v3) only the relative distances are embedded, clipped: no hard limit
        return self.config.max_position_embeddings if self.config.position_biased_input else None

    def prepare_inputs(self, inputs: dict) -> dict:
        if not self.config.type_vocab_size:
            inputs.pop("token_type_ids", None)  # DeBERTa-v3 tokenizers return them; with no table, Transformers ignores them
        return super().prepare_inputs(inputs)


def _head(rules):
    return classmethod(lambda cls, config: _convert.head_table(config, rules(config)))


class DebertaV2Model(DebertaV2PreTrainedModel):
    module_class = DebertaV2Module
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.encoder_table(config)


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    module_class = DebertaV2ForSequenceClassificationModule
    conversion_table = _head(_convert.pooled_rules)


class DebertaV2ForTokenClassification(DebertaV2PreTrainedModel):
    module_class = DebertaV2ForTokenClassificationModule
    conversion_table = _head(lambda config: _convert.linear("classifier", "classifier"))


class DebertaV2ForQuestionAnswering(DebertaV2PreTrainedModel):
    module_class = DebertaV2ForQuestionAnsweringModule
    conversion_table = _head(lambda config: _convert.linear("qa_outputs", "qa_outputs"))


class DebertaV2ForMultipleChoice(DebertaV2PreTrainedModel):
    module_class = DebertaV2ForMultipleChoiceModule
    conversion_table = _head(_convert.pooled_rules)

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class DebertaV2ForMaskedLM(DebertaV2PreTrainedModel):
    module_class = DebertaV2ForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)
