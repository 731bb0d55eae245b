"""Auto classes: ``config.json``'s ``model_type`` -> the config and model classes, from one table.

Architectures are imported only when used, so ``import fxformers`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Optional

from .configuration import PretrainedConfig, drop_torch_only_kwargs, load_config_dict

# model_type -> (package under fxformers.models, config class, {auto class -> model class})
REGISTRY: dict[str, tuple[str, str, dict[str, str]]] = {
    "bert": ("bert", "BertConfig", {
        "AutoModel": "BertModel",
        "AutoModelForSequenceClassification": "BertForSequenceClassification",
        "AutoModelForTokenClassification": "BertForTokenClassification",
        "AutoModelForQuestionAnswering": "BertForQuestionAnswering",
        "AutoModelForMaskedLM": "BertForMaskedLM",
        "AutoModelForMultipleChoice": "BertForMultipleChoice",
    }),
    "roberta": ("roberta", "RobertaConfig", {
        "AutoModel": "RobertaModel",
        "AutoModelForSequenceClassification": "RobertaForSequenceClassification",
        "AutoModelForTokenClassification": "RobertaForTokenClassification",
        "AutoModelForQuestionAnswering": "RobertaForQuestionAnswering",
        "AutoModelForMaskedLM": "RobertaForMaskedLM",
        "AutoModelForMultipleChoice": "RobertaForMultipleChoice",
    }),
    "xlm-roberta": ("roberta", "XLMRobertaConfig", {
        "AutoModel": "XLMRobertaModel",
        "AutoModelForSequenceClassification": "XLMRobertaForSequenceClassification",
        "AutoModelForTokenClassification": "XLMRobertaForTokenClassification",
        "AutoModelForQuestionAnswering": "XLMRobertaForQuestionAnswering",
        "AutoModelForMaskedLM": "XLMRobertaForMaskedLM",
        "AutoModelForMultipleChoice": "XLMRobertaForMultipleChoice",
    }),
    "gpt2": ("gpt2", "GPT2Config", {
        "AutoModel": "GPT2Model",
        "AutoModelForCausalLM": "GPT2LMHeadModel",
        "AutoModelForSequenceClassification": "GPT2ForSequenceClassification",
    }),
    "llama": ("llama", "LlamaConfig", {"AutoModel": "LlamaModel", "AutoModelForCausalLM": "LlamaForCausalLM"}),
    "mistral": ("llama", "MistralConfig", {"AutoModel": "MistralModel", "AutoModelForCausalLM": "MistralForCausalLM"}),
    "qwen2": ("llama", "Qwen2Config", {"AutoModel": "Qwen2Model", "AutoModelForCausalLM": "Qwen2ForCausalLM"}),
    "distilbert": ("distilbert", "DistilBertConfig", {
        "AutoModel": "DistilBertModel",
        "AutoModelForSequenceClassification": "DistilBertForSequenceClassification",
        "AutoModelForTokenClassification": "DistilBertForTokenClassification",
        "AutoModelForQuestionAnswering": "DistilBertForQuestionAnswering",
        "AutoModelForMaskedLM": "DistilBertForMaskedLM",
        "AutoModelForMultipleChoice": "DistilBertForMultipleChoice",
    }),
    "t5": ("t5", "T5Config", {
        "AutoModel": "T5Model",
        "AutoModelForSeq2SeqLM": "T5ForConditionalGeneration",
        "AutoModelForTextEncoding": "T5EncoderModel",
    }),
    "mt5": ("t5", "MT5Config", {
        "AutoModel": "MT5Model",
        "AutoModelForSeq2SeqLM": "MT5ForConditionalGeneration",
        "AutoModelForTextEncoding": "MT5EncoderModel",
    }),
    "bart": ("bart", "BartConfig", {
        "AutoModel": "BartModel",
        "AutoModelForSeq2SeqLM": "BartForConditionalGeneration",
        "AutoModelForSequenceClassification": "BartForSequenceClassification",
    }),
    "mbart": ("mbart", "MBartConfig", {
        "AutoModel": "MBartModel",
        "AutoModelForSeq2SeqLM": "MBartForConditionalGeneration",
        "AutoModelForSequenceClassification": "MBartForSequenceClassification",
    }),
    "qwen3": ("qwen3", "Qwen3Config", {
        "AutoModel": "Qwen3Model",
        "AutoModelForCausalLM": "Qwen3ForCausalLM",
        "AutoModelForSequenceClassification": "Qwen3ForSequenceClassification",
    }),
    "gemma": ("gemma", "GemmaConfig", {
        "AutoModel": "GemmaModel",
        "AutoModelForCausalLM": "GemmaForCausalLM",
        "AutoModelForSequenceClassification": "GemmaForSequenceClassification",
    }),
    "gemma2": ("gemma2", "Gemma2Config", {
        "AutoModel": "Gemma2Model",
        "AutoModelForCausalLM": "Gemma2ForCausalLM",
        "AutoModelForSequenceClassification": "Gemma2ForSequenceClassification",
    }),
    "gemma3_text": ("gemma3", "Gemma3TextConfig", {
        "AutoModel": "Gemma3TextModel",
        "AutoModelForCausalLM": "Gemma3ForCausalLM",
        "AutoModelForSequenceClassification": "Gemma3TextForSequenceClassification",
    }),
    "electra": ("electra", "ElectraConfig", {
        "AutoModel": "ElectraModel",
        "AutoModelForPreTraining": "ElectraForPreTraining",
        "AutoModelForSequenceClassification": "ElectraForSequenceClassification",
        "AutoModelForTokenClassification": "ElectraForTokenClassification",
        "AutoModelForQuestionAnswering": "ElectraForQuestionAnswering",
        "AutoModelForMaskedLM": "ElectraForMaskedLM",
        "AutoModelForMultipleChoice": "ElectraForMultipleChoice",
    }),
    "albert": ("albert", "AlbertConfig", {
        "AutoModel": "AlbertModel",
        "AutoModelForPreTraining": "AlbertForPreTraining",
        "AutoModelForSequenceClassification": "AlbertForSequenceClassification",
        "AutoModelForTokenClassification": "AlbertForTokenClassification",
        "AutoModelForQuestionAnswering": "AlbertForQuestionAnswering",
        "AutoModelForMaskedLM": "AlbertForMaskedLM",
        "AutoModelForMultipleChoice": "AlbertForMultipleChoice",
    }),
    "deberta-v2": ("deberta_v2", "DebertaV2Config", {
        "AutoModel": "DebertaV2Model",
        "AutoModelForSequenceClassification": "DebertaV2ForSequenceClassification",
        "AutoModelForTokenClassification": "DebertaV2ForTokenClassification",
        "AutoModelForQuestionAnswering": "DebertaV2ForQuestionAnswering",
        "AutoModelForMaskedLM": "DebertaV2ForMaskedLM",
        "AutoModelForMultipleChoice": "DebertaV2ForMultipleChoice",
    }),
    "mpnet": ("mpnet", "MPNetConfig", {
        "AutoModel": "MPNetModel",
        "AutoModelForSequenceClassification": "MPNetForSequenceClassification",
        "AutoModelForTokenClassification": "MPNetForTokenClassification",
        "AutoModelForQuestionAnswering": "MPNetForQuestionAnswering",
        "AutoModelForMaskedLM": "MPNetForMaskedLM",
        "AutoModelForMultipleChoice": "MPNetForMultipleChoice",
    }),
    "marian": ("marian", "MarianConfig", {"AutoModel": "MarianModel", "AutoModelForSeq2SeqLM": "MarianMTModel"}),
    "modernbert": ("modernbert", "ModernBertConfig", {
        "AutoModel": "ModernBertModel",
        "AutoModelForSequenceClassification": "ModernBertForSequenceClassification",
        "AutoModelForTokenClassification": "ModernBertForTokenClassification",
        "AutoModelForQuestionAnswering": "ModernBertForQuestionAnswering",
        "AutoModelForMaskedLM": "ModernBertForMaskedLM",
        "AutoModelForMultipleChoice": "ModernBertForMultipleChoice",
    }),
    "mixtral": ("mixtral", "MixtralConfig", {
        "AutoModel": "MixtralModel",
        "AutoModelForCausalLM": "MixtralForCausalLM",
        "AutoModelForSequenceClassification": "MixtralForSequenceClassification",
    }),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeConfig", {
        "AutoModel": "Qwen3MoeModel",
        "AutoModelForCausalLM": "Qwen3MoeForCausalLM",
        "AutoModelForSequenceClassification": "Qwen3MoeForSequenceClassification",
    }),
    "phi3": ("phi3", "Phi3Config", {
        "AutoModel": "Phi3Model",
        "AutoModelForCausalLM": "Phi3ForCausalLM",
        "AutoModelForSequenceClassification": "Phi3ForSequenceClassification",
    }),
}

_HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only")


def _load(model_type: str, class_name: str) -> Any:
    package = REGISTRY[model_type][0]
    for module in ("modeling", "configuration"):
        mod = importlib.import_module(f"fxformers.models.{package}.{module}")
        if hasattr(mod, class_name):
            return getattr(mod, class_name)
    raise ImportError(f"fxformers.models.{package} defines no {class_name}")


def _entry(model_type: Optional[str]) -> tuple[str, str, dict[str, str]]:
    if model_type not in REGISTRY:
        raise ValueError(
            f"Unknown model_type {model_type!r} in config.json; fxformers supports: {', '.join(sorted(REGISTRY))}."
        )
    return REGISTRY[model_type]


def config_class_for(model_type: Optional[str]) -> type[PretrainedConfig]:
    return _load(model_type, _entry(model_type)[1])


class AutoConfig:
    """``AutoConfig.from_pretrained(name_or_path, **overrides)`` picks the config class from ``model_type``."""

    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> PretrainedConfig:
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        drop_torch_only_kwargs("AutoConfig", kwargs)
        config_dict = load_config_dict(name_or_path, **hub)
        return config_class_for(config_dict.get("model_type")).from_dict(config_dict, **kwargs)

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> PretrainedConfig:
        return config_class_for(model_type)(**kwargs)

    @staticmethod
    def from_dict(config_dict: dict, **overrides: Any) -> PretrainedConfig:
        return config_class_for(config_dict.get("model_type")).from_dict(config_dict, **overrides)


class _AutoModel:
    auto_name: str = ""

    @classmethod
    def model_class(cls, config: PretrainedConfig) -> type:
        classes = _entry(config.model_type)[2]
        if cls.auto_name not in classes:
            supported = sorted(t for t, (_, _, c) in REGISTRY.items() if cls.auto_name in c)
            raise ValueError(
                f"{cls.__name__} does not support model_type {config.model_type!r}; it supports {', '.join(supported)}."
            )
        return _load(config.model_type, classes[cls.auto_name])

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, config: Optional[PretrainedConfig] = None, **kwargs: Any):
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if config is None:
            config = AutoConfig.from_pretrained(name_or_path, **hub)
        # every other keyword (config overrides, dtype, PyTorch-only options) is checked by the model class
        return cls.model_class(config).from_pretrained(name_or_path, config=config, **hub, **kwargs)

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any):
        return cls.model_class(config).from_config(config, **kwargs)


def _auto(name: str) -> type[_AutoModel]:
    return type(name, (_AutoModel,), {"auto_name": name, "__doc__": f"{name}.from_pretrained / from_config by model_type."})


AutoModel = _auto("AutoModel")
AutoModelForSequenceClassification = _auto("AutoModelForSequenceClassification")
AutoModelForTokenClassification = _auto("AutoModelForTokenClassification")
AutoModelForQuestionAnswering = _auto("AutoModelForQuestionAnswering")
AutoModelForMaskedLM = _auto("AutoModelForMaskedLM")
AutoModelForMultipleChoice = _auto("AutoModelForMultipleChoice")
AutoModelForCausalLM = _auto("AutoModelForCausalLM")
AutoModelForSeq2SeqLM = _auto("AutoModelForSeq2SeqLM")
AutoModelForTextEncoding = _auto("AutoModelForTextEncoding")
AutoModelForPreTraining = _auto("AutoModelForPreTraining")
