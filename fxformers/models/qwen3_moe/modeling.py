"""Qwen3-MoE: the MoE decoder of ``fxformers.models.mixtral`` with Qwen3 attention (per-head q/k RMSNorm) and
Qwen3-MoE's layer pattern (``decoder_sparse_step``, ``mlp_only_layers``) and routing (``norm_topk_prob``), all read
through ``Qwen3MoeConfig``'s methods.
"""

from __future__ import annotations

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ..decoder_heads import SequenceClassificationMixin
from ..mixtral.modeling import MoeForCausalLMModule, MoeForSequenceClassificationModule, MoeModule, MoePreTrainedModel
from . import convert as _convert
from .configuration import Qwen3MoeConfig


class Qwen3MoePreTrainedModel(MoePreTrainedModel):
    config_class = Qwen3MoeConfig

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class Qwen3MoeModel(Qwen3MoePreTrainedModel):
    module_class = MoeModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class Qwen3MoeForCausalLM(DecoderOnlyGenerationMixin, Qwen3MoePreTrainedModel):
    module_class = MoeForCausalLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class Qwen3MoeForSequenceClassification(SequenceClassificationMixin, Qwen3MoePreTrainedModel):
    module_class = MoeForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config).prefixed("model.", "model/") + cls.head_table()
