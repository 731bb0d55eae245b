"""``pipeline(task, model=...)``: Transformers' pipelines (4.x behaviour) on fxformers models.

    >>> from fxformers import pipeline
    >>> classifier = pipeline("sentiment-analysis", model="path/to/folder")
    >>> classifier("I love this!")
    [{'label': 'POSITIVE', 'score': 0.9998}]

The tasks, their aliases, the model class each loads and the default model (Transformers 4.x's choices) are in
``SUPPORTED_TASKS`` below.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from .base import Pipeline, bucket_length, bucket_rows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    impl: str  # "module:Class" under fxformers.pipelines
    auto_model: str  # the fxformers.auto class that loads the model
    default: Optional[str]  # Transformers 4.x's default model id for the task


SUPPORTED_TASKS: dict[str, Task] = {
    "feature-extraction": Task("feature_extraction:FeatureExtractionPipeline", "AutoModel", "distilbert/distilbert-base-cased"),
    "text-classification": Task(
        "text_classification:TextClassificationPipeline", "AutoModelForSequenceClassification",
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    ),
    "token-classification": Task(
        "token_classification:TokenClassificationPipeline", "AutoModelForTokenClassification",
        "dbmdz/bert-large-cased-finetuned-conll03-english",
    ),
    "question-answering": Task(
        "question_answering:QuestionAnsweringPipeline", "AutoModelForQuestionAnswering",
        "distilbert/distilbert-base-cased-distilled-squad",
    ),
    "fill-mask": Task("fill_mask:FillMaskPipeline", "AutoModelForMaskedLM", "distilbert/distilroberta-base"),
    "zero-shot-classification": Task(
        "zero_shot_classification:ZeroShotClassificationPipeline", "AutoModelForSequenceClassification",
        "facebook/bart-large-mnli",
    ),
    "text-generation": Task("text_generation:TextGenerationPipeline", "AutoModelForCausalLM", "openai-community/gpt2"),
    "text2text-generation": Task(
        "text2text_generation:Text2TextGenerationPipeline", "AutoModelForSeq2SeqLM", "google-t5/t5-base"
    ),
    "summarization": Task(
        "text2text_generation:SummarizationPipeline", "AutoModelForSeq2SeqLM", "sshleifer/distilbart-cnn-12-6"
    ),
    "translation": Task("text2text_generation:TranslationPipeline", "AutoModelForSeq2SeqLM", "google-t5/t5-base"),
}

TASK_ALIASES: dict[str, str] = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

# the model class name suffix -> task, to infer the task of a local folder from config.json's "architectures"
_ARCHITECTURE_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("Model", "feature-extraction"),
)


def get_supported_tasks() -> list[str]:
    """Every task name pipeline() accepts (aliases and the translation_XX_to_YY form included)."""
    return sorted([*SUPPORTED_TASKS, *TASK_ALIASES, "translation_XX_to_YY"])


def check_task(task: str) -> tuple[str, Task]:
    """Normalise a task name (aliases, ``translation_en_to_fr``) -> (normalised name, its Task)."""
    task = TASK_ALIASES.get(task, task)
    if task in SUPPORTED_TASKS:
        return task, SUPPORTED_TASKS[task]
    if task.startswith("translation"):
        parts = task.split("_")
        if len(parts) == 4 and parts[0] == "translation" and parts[2] == "to":
            return task, SUPPORTED_TASKS["translation"]
        raise KeyError(f"Invalid translation task {task!r}: use 'translation' or the 'translation_XX_to_YY' form.")
    raise KeyError(f"Unknown task {task!r}; available tasks: {', '.join(get_supported_tasks())}.")


def _infer_task(model: Any, config: Any) -> str:
    if config is None:
        if isinstance(model, (str, os.PathLike)):
            from ..auto import AutoConfig

            config = AutoConfig.from_pretrained(model)
        else:
            config = getattr(model, "config", None)
    for arch in getattr(config, "architectures", None) or []:
        for suffix, task in _ARCHITECTURE_TASKS:
            if arch.endswith(suffix):
                return task
    raise RuntimeError(
        f"Cannot infer the task of {model!r} (config.json lists architectures={getattr(config, 'architectures', None)}); "
        f"pass it: pipeline('text-classification', model=...). Tasks: {', '.join(get_supported_tasks())}."
    )


def _default_model_error(task: str, default: str, err: Exception) -> OSError:
    return OSError(
        f"No model was given for task {task!r}, and its default model {default!r} is not in the Hugging Face cache "
        f"and could not be downloaded ({type(err).__name__}). Pass a local folder instead, e.g.\n"
        f"    pipeline({task!r}, model='/path/to/folder')      (command line: --model /path/to/folder)\n"
        "where the folder holds config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer "
        "files (what save_pretrained writes), or run once while online to cache the default."
    )


def pipeline(
    task: Optional[str] = None,
    model: Any = None,
    tokenizer: Any = None,
    config: Any = None,
    device: Any = None,
    dtype: Any = None,
    batch_size: Optional[int] = None,
    *,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    cache_dir: Optional[str] = None,
    local_files_only: bool = False,
    model_kwargs: Optional[dict] = None,
    **kwargs: Any,
) -> Pipeline:
    """Build a pipeline for ``task`` (see ``get_supported_tasks()``).

    Args:
        task: "text-classification" ("sentiment-analysis"), "token-classification" ("ner"), "question-answering",
            "fill-mask", "zero-shot-classification", "feature-extraction", "text-generation",
            "text2text-generation", "summarization", "translation" / "translation_xx_to_yy". When None, it is
            inferred from the model's config.json ``architectures``.
        model: a hub id, a local folder, or a fxformers model object (then pass ``tokenizer`` too). None: the
            task's default model (Transformers 4.x's), from the cache or downloaded.
        tokenizer: a tokenizer object, or a hub id / folder; defaults to the model's.
        config: a config object or a hub id / folder to load the model with.
        device: None (JAX's default device), -1 / "cpu", an index into ``jax.devices()``, "gpu", or a jax.Device.
        dtype: parameter and compute dtype (float32 by default; "bfloat16", "auto" ...).
        batch_size: how many inputs (features) per model call; results do not depend on it.
        **kwargs: task parameters fixed for every call (``top_k=2``, ``aggregation_strategy="simple"`` ...).
    """
    hub = {k: v for k, v in dict(revision=revision, token=token, cache_dir=cache_dir).items() if v is not None}
    if local_files_only:
        hub["local_files_only"] = True
    if task is None:
        if model is None:
            raise RuntimeError("pipeline() needs a task or a model; e.g. pipeline('sentiment-analysis').")
        task = _infer_task(model, config)
    task, spec = check_task(task)

    from .. import auto

    default_used = None
    if model is None:
        if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            raise RuntimeError("A tokenizer object was given without a model; pass the model too.")
        model = spec.default
        default_used = model
        logger.warning("No model was supplied, defaulted to %s (Transformers' default for %r).", model, task)

    if isinstance(config, (str, os.PathLike)):
        config = auto.AutoConfig.from_pretrained(config, **hub)

    if isinstance(model, (str, os.PathLike)):
        model_id = model
        try:
            loaded = getattr(auto, spec.auto_model).from_pretrained(
                model_id, config=config, **hub, **({"dtype": dtype} if dtype is not None else {}), **(model_kwargs or {})
            )
        except OSError as err:
            if default_used is not None:
                raise _default_model_error(task, default_used, err) from err
            raise
        if tokenizer is None:
            tokenizer = model_id
        model = loaded
    elif tokenizer is None:
        name = getattr(model.config, "_name_or_path", None) or getattr(model.config, "name_or_path", None)
        if not name:
            raise RuntimeError(
                "A model object was given without its tokenizer; pass tokenizer=AutoTokenizer.from_pretrained(...)."
            )
        tokenizer = name
    elif dtype is not None and hasattr(model, "astype"):
        model = model.astype(dtype)

    if task == "translation" and getattr(model.config, "task_specific_params", None):
        for key in model.config.task_specific_params:
            if key.startswith("translation"):  # Transformers picks the model's first translation_XX_to_YY
                logger.warning('"translation" task was used, instead of "translation_XX_to_YY", defaulting to "%s"', key)
                task = key
                break

    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **hub)

    module_name, class_name = spec.impl.split(":")
    cls = getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)
    return cls(model=model, tokenizer=tokenizer, task=task, batch_size=batch_size, device=device, **kwargs)


def __getattr__(name: str):
    lazy = {
        "FeatureExtractionPipeline": "feature_extraction",
        "TextClassificationPipeline": "text_classification",
        "TokenClassificationPipeline": "token_classification",
        "NerPipeline": "token_classification",
        "AggregationStrategy": "token_classification",
        "QuestionAnsweringPipeline": "question_answering",
        "FillMaskPipeline": "fill_mask",
        "ZeroShotClassificationPipeline": "zero_shot_classification",
        "TextGenerationPipeline": "text_generation",
        "Text2TextGenerationPipeline": "text2text_generation",
        "SummarizationPipeline": "text2text_generation",
        "TranslationPipeline": "text2text_generation",
        "SentenceEmbedder": "sentence_embeddings",
    }
    if name in lazy:
        return getattr(importlib.import_module(f"{__name__}.{lazy[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "pipeline", "Pipeline", "SUPPORTED_TASKS", "TASK_ALIASES", "get_supported_tasks", "check_task",
    "bucket_length", "bucket_rows", "SentenceEmbedder",
]
