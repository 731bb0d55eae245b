"""fxformers: Hugging Face Transformers, as pure JAX functions over plain pytrees.

Public names are imported lazily: ``import fxformers`` is cheap, and ``fxformers.BertModel`` imports only BERT.
"""

from __future__ import annotations

import importlib
from typing import Any

from .auto import REGISTRY

__version__ = "0.1.0"


# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PretrainedConfig": "fxformers.configuration",
    "create_mesh": "fxformers.sharding",
    "PreTrainedModel": "fxformers.modeling",
    "AutoConfig": "fxformers.auto",
    "AutoModel": "fxformers.auto",
    "AutoModelForSequenceClassification": "fxformers.auto",
    "AutoModelForTokenClassification": "fxformers.auto",
    "AutoModelForQuestionAnswering": "fxformers.auto",
    "AutoModelForMaskedLM": "fxformers.auto",
    "AutoModelForMultipleChoice": "fxformers.auto",
    "AutoModelForCausalLM": "fxformers.auto",
    "AutoModelForSeq2SeqLM": "fxformers.auto",
    "AutoModelForTextEncoding": "fxformers.auto",
    "AutoModelForPreTraining": "fxformers.auto",
    "GenerationConfig": "fxformers.generation",
    "GenerationMixin": "fxformers.generation",
    "top_k_top_p_filtering": "fxformers.generation",
    "ConversionTable": "fxformers.convert",
    "Rule": "fxformers.convert",
    "load_state_dict": "fxformers.checkpoints",
    "save_state_dict": "fxformers.checkpoints",
    "UnsafeCheckpointError": "fxformers.checkpoints",
    "CheckpointError": "fxformers.checkpoints",
    "pipeline": "fxformers.pipelines",
    "SentenceEmbedder": "fxformers.pipelines",
    "set_seed": "fxformers.random",
    "TextStreamer": "fxformers.generation",
    "TextIteratorStreamer": "fxformers.generation",
    "BaseStreamer": "fxformers.generation",
}
# Every architecture's config and model classes, from the one model_type table the Auto classes use.
for _package, _config, _classes in REGISTRY.values():
    _EXPORTS[_config] = f"fxformers.models.{_package}.configuration"
    for _name in _classes.values():
        _EXPORTS[_name] = f"fxformers.models.{_package}.modeling"
for _name in (
    "AutoTokenizer", "BatchEncoding", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "BertTokenizer",
    "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast", "RobertaTokenizer", "RobertaTokenizerFast",
    "BartTokenizer", "BartTokenizerFast", "XLMRobertaTokenizer", "XLMRobertaTokenizerFast", "GPT2Tokenizer",
    "GPT2TokenizerFast", "T5Tokenizer", "T5TokenizerFast", "LlamaTokenizer", "LlamaTokenizerFast", "Qwen2Tokenizer",
    "Qwen2TokenizerFast", "TokenizerInputError",
    "AlbertTokenizer", "AlbertTokenizerFast", "DebertaV2Tokenizer", "DebertaV2TokenizerFast",
    "MarianTokenizer",
):
    _EXPORTS[_name] = "fxformers.tokenization"
_EXPORTS["TokenizerError"] = "fxformers.tokenization"
for _name in (
    "Trainer", "TrainingArguments", "EvalPrediction", "TrainState", "DataCollatorWithPadding",
    "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq", "DataCollatorForTokenClassification",
    "DefaultDataCollator", "default_data_collator", "TrainerCallback", "TrainerControl", "TrainerState",
    "EarlyStoppingCallback", "ProgressCallback", "PrinterCallback", "Seq2SeqTrainer", "Seq2SeqTrainingArguments",
):
    _EXPORTS[_name] = "fxformers.training"
for _name in (
    "create_optimizer", "get_scheduler", "get_linear_schedule_with_warmup", "get_cosine_schedule_with_warmup",
    "get_cosine_with_hard_restarts_schedule_with_warmup", "get_constant_schedule", "get_constant_schedule_with_warmup",
    "get_polynomial_decay_schedule_with_warmup", "get_inverse_sqrt_schedule",
):
    _EXPORTS[_name] = "fxformers.optimization"
for _name in ("initialize_distributed", "is_main_process", "barrier"):
    _EXPORTS[_name] = "fxformers.distributed"

for _name in ("LoraConfig", "get_peft_model", "PeftModel"):
    _EXPORTS[_name] = "fxformers.lora"

__all__ = sorted(_EXPORTS)


# submodules reachable as attributes, as in Transformers (fxformers.logging.set_verbosity_info())
_SUBMODULES = ("logging",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"fxformers.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fxformers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
