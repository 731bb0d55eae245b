"""Ready-made fine-tuning runs driven by a YAML file: ``fxformers train CONFIG.yaml [--key value ...]``.

A config names a ``task`` and its fields; ``training:`` holds ``TrainingArguments``. Overrides use dotted keys for
nested fields (``--training.learning_rate 1e-4``) and bare names for either level (``--learning_rate 1e-4``).

Task ``text-classification`` (in the spirit of Transformers' run_glue.py): CSV, TSV, JSON or JSON-lines files with
a text column (and optionally a second one for pairs) and a label column (strings or integers). A ``lora:``
section (``LoraConfig`` fields) trains a LoRA adapter instead of the whole model.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .trainer import EvalPrediction, Trainer, TrainingArguments

logger = logging.getLogger(__name__)


def read_table(path: str | Path) -> list[dict]:
    """Rows of a .csv / .tsv / .json (a list of objects) / .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    raise ValueError(f"{path}: use a .csv, .tsv, .json or .jsonl file.")


def _accuracy(p: EvalPrediction) -> dict:
    return {"accuracy": float((np.asarray(p.predictions).argmax(-1) == np.asarray(p.label_ids)).mean())}


def run_text_classification(
    model_name_or_path: str,
    train_file: str,
    validation_file: Optional[str] = None,
    text_column: str = "text",
    text_pair_column: Optional[str] = None,
    label_column: str = "label",
    max_seq_length: int = 128,
    training: Optional[dict] = None,
    lora: Optional[dict] = None,
) -> dict:
    """Fine-tune a sequence classifier on a table of texts and labels; evaluate, save, and return the metrics.

    ``lora``: ``LoraConfig`` fields (``r``, ``lora_alpha``, ``target_modules`` …, plus ``base_precision``) to train
    a LoRA adapter (and the new classifier head, as PEFT's SEQ_CLS does) instead of the whole model; the output
    folder then holds the adapter in PEFT's format."""
    from ..auto import AutoModelForSequenceClassification
    from ..tokenization import AutoTokenizer

    args = TrainingArguments(**(training or {}))
    train_rows = read_table(train_file)
    eval_rows = read_table(validation_file) if validation_file else None
    for name, rows in (("train_file", train_rows), ("validation_file", eval_rows or [])):
        missing = [c for c in (text_column, text_pair_column, label_column) if c and rows and c not in rows[0]]
        if missing:
            raise ValueError(f"{name} has no column {missing}; its columns are {sorted(rows[0])}.")
    raw_labels = sorted({str(r[label_column]) for r in train_rows})
    if all(label.lstrip("-").isdigit() for label in raw_labels):
        raw_labels = sorted(raw_labels, key=int)
    label2id = {label: i for i, label in enumerate(raw_labels)}

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)

    def encode(rows: list[dict]) -> list[dict]:
        texts = [r[text_column] for r in rows]
        pairs = [r[text_pair_column] for r in rows] if text_pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_seq_length)
        out = []
        for i, row in enumerate(rows):
            label = str(row[label_column])
            if label not in label2id:
                raise ValueError(f"Label {label!r} is not among the training labels {raw_labels}.")
            out.append({k: enc[k][i] for k in enc.keys()} | {"label": label2id[label]})
        return out

    model = AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path, num_labels=len(raw_labels), id2label=dict(enumerate(raw_labels)), label2id=label2id,
    )
    if lora:
        from ..lora import LoraConfig, get_peft_model

        lora = dict(lora)
        precision = lora.pop("base_precision", None)
        model = get_peft_model(model, LoraConfig(**{"task_type": "SEQ_CLS", **lora}), base_precision=precision)
    trainer = Trainer(model, args, train_dataset=encode(train_rows), eval_dataset=encode(eval_rows) if eval_rows else None,
                      processing_class=tokenizer, compute_metrics=_accuracy)
    metrics = dict(trainer.train().metrics)
    if eval_rows:
        metrics.update(trainer.evaluate())
    trainer.save_model()
    logger.info("Saved the fine-tuned model to %s", args.output_dir)
    return metrics


TASKS = {"text-classification": run_text_classification}


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """``["--training.learning_rate", "1e-4", "--max_seq_length", "64"]`` applied to a config dict (values parsed
    as JSON when they can be). A bare name sets a top-level field, or a ``training`` field of that name."""
    if len(overrides) % 2:
        raise ValueError(f"Overrides come in --key value pairs; got {list(overrides)}.")
    config = json.loads(json.dumps(config))
    for flag, text in zip(overrides[::2], overrides[1::2]):
        if not flag.startswith("--"):
            raise ValueError(f"Expected --key before {flag!r}.")
        key = flag[2:].replace("-", "_") if "." not in flag else flag[2:]
        value = _parse_value(text)
        if "." in key:
            section, name = key.split(".", 1)
            config.setdefault(section, {})[name] = value
        elif key in config or key not in TrainingArguments.__dataclass_fields__:
            config[key] = value
        else:
            config.setdefault("training", {})[key] = value
    return config


def train_from_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Run the task a YAML (or JSON) config describes, with command-line overrides; returns its metrics."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() == ".json":
        config = json.loads(text)
    else:
        try:
            import yaml
        except ImportError:
            raise ImportError("Reading a YAML config needs PyYAML (`pip install pyyaml`), or write the config as JSON.") from None
        config = yaml.safe_load(text)
    config = apply_overrides(config or {}, overrides)
    task = config.pop("task", None)
    if task not in TASKS:
        raise ValueError(f"{path}: `task` must be one of {sorted(TASKS)}, got {task!r}.")
    return TASKS[task](**config)
