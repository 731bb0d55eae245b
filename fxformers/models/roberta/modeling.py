"""RoBERTa (and XLM-RoBERTa, the same network): BERT's encoder with fairseq position ids and its own two heads.

Shapes: B batch, T sequence length, D hidden size, V vocabulary, L labels.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...convert import linear, layer_norm as layer_norm_rules
from ...losses import cross_entropy
from ...outputs import MaskedLMOutput
from ..bert import convert as bert_convert
from ..bert.modeling import (
    BertEmbeddings,
    BertEncoderHead,
    BertForMultipleChoiceModule,
    BertForQuestionAnsweringModule,
    BertForSequenceClassificationModule,
    BertForTokenClassificationModule,
    BertModule,
    BertPreTrainedModel,
    decode_vocab,
    dense,
    layer_norm,
)
from .configuration import RobertaConfig, XLMRobertaConfig


class RobertaEmbeddings(BertEmbeddings):
    def default_position_ids(self, input_ids, inputs_embeds):
        """Positions start after the padding index and skip padding tokens, as fairseq numbers them."""
        pad = self.config.pad_token_id
        if input_ids is None:
            return jnp.arange(inputs_embeds.shape[1])[None, :] + pad + 1  # [1, T]
        not_pad = (input_ids != pad).astype(jnp.int32)
        return jnp.cumsum(not_pad, axis=1) * not_pad + pad  # [B, T]


class RobertaModule(BertModule):
    embeddings_class: ClassVar[type] = RobertaEmbeddings


class _RobertaHead:
    """Mixin: the encoder is RoBERTa's, saved under ``roberta``."""

    base_class: ClassVar[type] = RobertaModule
    base_name: ClassVar[str] = "roberta"


class RobertaForSequenceClassificationModule(_RobertaHead, BertForSequenceClassificationModule):
    pooled: ClassVar[bool] = False

    def classify(self, out, deterministic):
        """classifier.dense -> tanh -> classifier.out_proj on the first token, dropout before each."""
        drop = nn.Dropout(self.dropout_rate())
        x = drop(out.last_hidden_state[:, 0], deterministic=deterministic)  # [B, D]
        x = jnp.tanh(dense(self.config, self.config.hidden_size, self.dtype, name="classifier_dense")(x))
        x = drop(x, deterministic=deterministic)
        return dense(self.config, self.config.num_labels, self.dtype, name="classifier_out_proj")(x)  # [B, L]


class RobertaForTokenClassificationModule(_RobertaHead, BertForTokenClassificationModule):
    pass


class RobertaForQuestionAnsweringModule(_RobertaHead, BertForQuestionAnsweringModule):
    pass


class RobertaForMultipleChoiceModule(_RobertaHead, BertForMultipleChoiceModule):
    pass


class RobertaForMaskedLMModule(_RobertaHead, BertEncoderHead):

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = dense(c, c.hidden_size, self.dtype, name="lm_head_dense")(out.last_hidden_state)
        x = layer_norm(c, self.dtype, name="lm_head_layer_norm")(nn.gelu(x, approximate=False))  # lm_head uses exact gelu
        embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
        logits = decode_vocab(self, x, embeddings).astype(jnp.float32)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
class RobertaPreTrainedModel(BertPreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def max_input_length(self):
        # fairseq positions start at pad_token_id + 1, so the table holds max_position_embeddings - pad - 1 tokens
        return self.config.max_position_embeddings - self.config.pad_token_id - 1


def _head(pooler: bool, rules: list, ignore: tuple = ()):
    return classmethod(lambda cls, config: bert_convert.head_table("roberta", pooler, rules, ignore))


class RobertaModel(RobertaPreTrainedModel):
    module_class = RobertaModule
    has_base_prefix = False
    optional_weights = (r"^pooler/",)

    @classmethod
    def conversion_table(cls, config):
        return bert_convert.encoder_table(pooler=True)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    module_class = RobertaForSequenceClassificationModule
    conversion_table = _head(False, linear("classifier.dense", "classifier_dense") + linear("classifier.out_proj", "classifier_out_proj"))


class RobertaForTokenClassification(RobertaPreTrainedModel):
    module_class = RobertaForTokenClassificationModule
    conversion_table = _head(False, linear("classifier", "classifier"))


class RobertaForQuestionAnswering(RobertaPreTrainedModel):
    module_class = RobertaForQuestionAnsweringModule
    conversion_table = _head(False, linear("qa_outputs", "qa_outputs"))


class RobertaForMultipleChoice(RobertaPreTrainedModel):
    module_class = RobertaForMultipleChoiceModule
    conversion_table = _head(True, linear("classifier", "classifier"))

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class RobertaForMaskedLM(RobertaPreTrainedModel):
    module_class = RobertaForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        rules, ignore = bert_convert.vocab_head_rules(config, "lm_head", "lm_head.bias")
        rules += linear("lm_head.dense", "lm_head_dense") + layer_norm_rules("lm_head.layer_norm", "lm_head_layer_norm")
        return bert_convert.head_table("roberta", False, rules, ignore)


# XLM-RoBERTa is the same network under another model_type.
def _xlm(cls: type) -> type:
    return type(cls.__name__.replace("Roberta", "XLMRoberta"), (cls,), {"config_class": XLMRobertaConfig, "__module__": __name__})


XLMRobertaModel = _xlm(RobertaModel)
XLMRobertaForSequenceClassification = _xlm(RobertaForSequenceClassification)
XLMRobertaForTokenClassification = _xlm(RobertaForTokenClassification)
XLMRobertaForQuestionAnswering = _xlm(RobertaForQuestionAnswering)
XLMRobertaForMultipleChoice = _xlm(RobertaForMultipleChoice)
XLMRobertaForMaskedLM = _xlm(RobertaForMaskedLM)
