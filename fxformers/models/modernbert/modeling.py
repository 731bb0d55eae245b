"""ModernBERT: a pre-norm encoder with rotary positions (separate bases for global and local layers), global
attention every ``global_attn_every_n_layers`` layers and windowed attention between, GeGLU feed-forward, optional
biases, an embedding norm and a final norm; its heads share a dense -> act -> norm prediction head.

Shapes: B batch, T sequence length, D hidden size, N heads, H head dim (D = N * H), F intermediate size,
V vocabulary, L labels.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from ...losses import cross_entropy, sequence_classification_loss, span_loss
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.masks import combine, padding_mask
from ...ops.rotary import apply_rotary, cos_sin
from ...outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


def dense(config, features: int, bias: bool, dtype, name=None) -> nn.Dense:
    return nn.Dense(features, use_bias=bias, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


def norm(config, dtype, name=None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.norm_eps, use_bias=bool(config.norm_bias), dtype=dtype, name=name)


class ModernBertAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, cos, sin, deterministic=True, output_attentions=False):
        c = self.config
        b, t, d = x.shape
        n = c.num_attention_heads
        qkv = dense(c, 3 * d, c.attention_bias, self.dtype, "Wqkv")(x).reshape(b, t, 3, n, d // n)  # [B, T, 3, N, H]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, N, H]
        q = apply_rotary(q.astype(jnp.float32), cos, sin).astype(self.dtype)  # rotated in float32, as Transformers
        k = apply_rotary(k.astype(jnp.float32), cos, sin).astype(self.dtype)
        rate = c.attention_dropout
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = dot_product_attention(q, k, v, mask=mask, dropout_rate=rate, dropout_rng=rng,
                                                 return_weights=output_attentions)
        out = dense(c, d, c.attention_bias, self.dtype, "Wo")(context.reshape(b, t, d))
        return nn.Dropout(rate)(out, deterministic=deterministic), weights


class ModernBertMLP(nn.Module):
    """GeGLU: Wi -> (act(input) * gate) -> dropout -> Wo."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic=True):
        c = self.config
        up, gate = jnp.split(dense(c, 2 * c.intermediate_size, c.mlp_bias, self.dtype, "Wi")(x), 2, axis=-1)  # [B, T, F] x 2
        h = nn.Dropout(c.mlp_dropout)(get_activation(c.hidden_activation)(up) * gate, deterministic=deterministic)
        return dense(c, c.hidden_size, c.mlp_bias, self.dtype, "Wo")(h)


class ModernBertLayer(nn.Module):
    config: Any
    index: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, cos, sin, deterministic=True, output_attentions=False):
        c = self.config
        h = x if self.index == 0 else norm(c, self.dtype, "attn_norm")(x)  # layer 0: the embedding norm serves
        h, weights = ModernBertAttention(c, self.dtype, name="attn")(h, mask, cos, sin, deterministic, output_attentions)
        x = x + h
        x = x + ModernBertMLP(c, self.dtype, name="mlp")(norm(c, self.dtype, "mlp_norm")(x), deterministic)
        return x, weights


class ModernBertEmbeddings(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, inputs_embeds, deterministic=True):
        c = self.config
        if inputs_embeds is None:
            inputs_embeds = nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, name="tok_embeddings",
                                     embedding_init=nn.initializers.normal(c.initializer_range))(input_ids)  # [B, T, D]
        x = norm(c, self.dtype, "norm")(inputs_embeds.astype(self.dtype))
        return nn.Dropout(c.embedding_dropout)(x, deterministic=deterministic)


class ModernBertModule(nn.Module):
    """Embeddings (+ norm), the layers (global or windowed attention, each with its rotary base), the final norm."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False, token_type_ids=None):
        c = self.config
        del token_type_ids  # ModernBERT has no token types; ignored, as Transformers does
        x = ModernBertEmbeddings(c, self.dtype, name="embeddings")(input_ids, inputs_embeds, deterministic)
        b, t = x.shape[:2]
        if position_ids is None:
            position_ids = jnp.arange(t)[None, :]  # [1, T]
        position_ids = jnp.broadcast_to(position_ids, (b, t))
        pad = None if attention_mask is None else padding_mask(attention_mask)  # [B, 1, 1, T]
        distance = jnp.abs(jnp.arange(t)[:, None] - jnp.arange(t)[None, :])  # [T, T]
        masks = {"full_attention": pad, "sliding_attention": combine(pad, (distance <= c.window())[None, None])}
        head_dim = c.hidden_size // c.num_attention_heads
        rope = {kind: cos_sin(c.rope_config(kind), head_dim, position_ids, jnp.float32) for kind in set(c.attention_types())}
        hidden_states, attentions = (x,), ()
        for i, kind in enumerate(c.attention_types()):
            x, weights = ModernBertLayer(c, i, self.dtype, name=f"layers_{i}")(
                x, masks[kind], *rope[kind], deterministic, output_attentions)
            hidden_states += (x,)
            attentions += (weights,)
        x = norm(c, self.dtype, "final_norm")(x)
        hidden_states = hidden_states[:-1] + (x,)  # Transformers 5 reports the last one after the final norm
        return BaseModelOutput(x, hidden_states if output_hidden_states else None,
                               attentions if output_attentions else None)


class ModernBertHeadBase(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def encode(self, input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
               output_hidden_states):
        return ModernBertModule(self.config, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions, output_hidden_states)


class _PredictionHead(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = self.config
        x = dense(c, c.hidden_size, c.classifier_bias, self.dtype, "dense")(x)
        return norm(c, self.dtype, "norm")(get_activation(c.classifier_activation)(x))


class ModernBertForMaskedLMModule(ModernBertHeadBase):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False, token_type_ids=None):
        c = self.config
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        x = _PredictionHead(c, self.dtype, name="head")(out.last_hidden_state)
        if c.tie_word_embeddings:
            table = self.variables["params"]["model"]["embeddings"]["tok_embeddings"]["embedding"]
            logits = x @ table.astype(self.dtype).T  # [B, T, V]
        else:
            logits = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype, name="decoder")(x)
        if c.decoder_bias:
            logits = logits + self.param("decoder_bias", nn.initializers.zeros, (c.vocab_size,)).astype(self.dtype)
        logits = logits.astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertForSequenceClassificationModule(ModernBertHeadBase):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False, token_type_ids=None):
        c = self.config
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        h = out.last_hidden_state
        if c.classifier_pooling == "cls":
            pooled = h[:, 0]  # [B, D]
        else:
            m = jnp.ones(h.shape[:2], h.dtype) if attention_mask is None else attention_mask.astype(h.dtype)
            pooled = (h * m[..., None]).sum(axis=1) / m.sum(axis=1, keepdims=True)  # [B, D]
        x = nn.Dropout(c.classifier_dropout)(_PredictionHead(c, self.dtype, name="head")(pooled), deterministic=deterministic)
        logits = dense(c, c.num_labels, True, self.dtype, "classifier")(x).astype(jnp.float32)
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertForTokenClassificationModule(ModernBertHeadBase):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False, token_type_ids=None):
        c = self.config
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        x = _PredictionHead(c, self.dtype, name="head")(out.last_hidden_state)
        x = nn.Dropout(c.classifier_dropout)(x, deterministic=deterministic)
        logits = dense(c, c.num_labels, True, self.dtype, "classifier")(x).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertForQuestionAnsweringModule(ModernBertHeadBase):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                 start_positions=None, end_positions=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False, token_type_ids=None):
        c = self.config
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        x = _PredictionHead(c, self.dtype, name="head")(out.last_hidden_state)
        x = nn.Dropout(c.classifier_dropout)(x, deterministic=deterministic)
        logits = dense(c, c.num_labels, True, self.dtype, "classifier")(x).astype(jnp.float32)
        start, end = logits[..., 0], logits[..., 1]  # [B, T] each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions)


class ModernBertForMultipleChoiceModule(ModernBertHeadBase):
    """Choices flattened into the batch; ``cls`` pools each row's first attended token (left padding allowed)."""

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False, token_type_ids=None):
        c = self.config
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        b, num_choices = ref.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * num_choices,) + a.shape[2:])  # [B, C, T] -> [B*C, T]
        attention_mask = flat(attention_mask)
        out = self.encode(flat(input_ids), attention_mask, flat(position_ids), flat(inputs_embeds), deterministic,
                          output_attentions, output_hidden_states)
        h = out.last_hidden_state  # [B*C, T, D]
        m = jnp.ones(h.shape[:2], jnp.int32) if attention_mask is None else attention_mask
        if c.classifier_pooling == "cls":
            first = jnp.argmax(m, axis=-1)  # [B*C]
            pooled = jnp.take_along_axis(h, first[:, None, None], axis=1)[:, 0]  # [B*C, D]
        else:
            w = m.astype(h.dtype)
            pooled = (h * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
        x = nn.Dropout(c.classifier_dropout)(_PredictionHead(c, self.dtype, name="head")(pooled), deterministic=deterministic)
        logits = dense(c, 1, True, self.dtype, "classifier")(x).reshape(b, num_choices).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
from ...modeling import PreTrainedModel  # noqa: E402
from ...convert import linear  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import ModernBertConfig  # noqa: E402


class ModernBertPreTrainedModel(PreTrainedModel):
    config_class = ModernBertConfig
    base_model_prefix = "model"
    has_base_prefix = True
    vocab_params = ((r"tok_embeddings/embedding$", 0), (r"^decoder_bias$", 0), (r"^decoder/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def max_input_length(self):
        return None  # rotary positions


class ModernBertModel(ModernBertPreTrainedModel):
    module_class = ModernBertModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.model_table(config)


class ModernBertForMaskedLM(ModernBertPreTrainedModel):
    module_class = ModernBertForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)


def _classifier_table(cls, config):
    return _convert.head_table(config, linear("classifier", "classifier"))


class ModernBertForSequenceClassification(ModernBertPreTrainedModel):
    module_class = ModernBertForSequenceClassificationModule
    conversion_table = classmethod(_classifier_table)


class ModernBertForTokenClassification(ModernBertPreTrainedModel):
    module_class = ModernBertForTokenClassificationModule
    conversion_table = classmethod(_classifier_table)


class ModernBertForQuestionAnswering(ModernBertPreTrainedModel):
    module_class = ModernBertForQuestionAnsweringModule
    conversion_table = classmethod(_classifier_table)


class ModernBertForMultipleChoice(ModernBertPreTrainedModel):
    module_class = ModernBertForMultipleChoiceModule
    conversion_table = classmethod(_classifier_table)

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}
