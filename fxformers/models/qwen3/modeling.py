"""Qwen3 (dense): the Llama decoder with an RMSNorm over each query and key head before rotation.

Llama's modules do it all: ``Qwen3Config.qk_norm()`` switches on the per-head q/k norms in ``LlamaAttention`` and
``layer_sliding_window`` says which layers slide; the classifier is the decoder families' shared head.
"""

from __future__ import annotations

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ..decoder_heads import DecoderForSequenceClassificationModule, SequenceClassificationMixin
from ..llama.modeling import LlamaForCausalLMModule, LlamaModule, LlamaPreTrainedModel
from . import convert as _convert
from .configuration import Qwen3Config


class Qwen3ForSequenceClassificationModule(DecoderForSequenceClassificationModule):
    base_module = LlamaModule


# -- public classes -------------------------------------------------------------------------------------------------
class Qwen3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Qwen3Config

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class Qwen3Model(Qwen3PreTrainedModel):
    module_class = LlamaModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class Qwen3ForCausalLM(DecoderOnlyGenerationMixin, Qwen3PreTrainedModel):
    module_class = LlamaForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class Qwen3ForSequenceClassification(SequenceClassificationMixin, Qwen3PreTrainedModel):
    module_class = Qwen3ForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.sequence_classification_table(config)
