"""zero-shot-classification: an NLI model scores "This example is {label}." against the text for each label."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .base import Pipeline

logger = logging.getLogger(__name__)


def _parse_labels(labels: Any) -> list[str]:
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    return labels


class ZeroShotClassificationPipeline(Pipeline):
    """``classifier(text, candidate_labels=[...])`` -> ``{"sequence", "labels", "scores"}`` (labels sorted by score).
    ``hypothesis_template`` (default "This example is {}."), ``multi_label`` (score each label on its own,
    entailment vs contradiction). The entailment class is the label of ``config.label2id`` starting with "entail"."""

    chunked = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.entailment_id == -1:
            logger.warning("Failed to determine 'entailment' label id from the label2id mapping in the model config. "
                           "Setting to -1. Define a descriptive label2id mapping in the model config to ensure correct outputs.")

    @property
    def entailment_id(self) -> int:
        for label, ind in (self.config.label2id or {}).items():
            if label.lower().startswith("entail"):
                return int(ind)
        return -1

    def _sanitize_parameters(self, **kwargs: Any):
        if kwargs.get("multi_class") is not None:
            kwargs["multi_label"] = kwargs["multi_class"]
            logger.warning("The `multi_class` argument has been deprecated and renamed to `multi_label`.")
        pre = {}
        if "candidate_labels" in kwargs:
            pre["candidate_labels"] = _parse_labels(kwargs["candidate_labels"])
        if "hypothesis_template" in kwargs:
            pre["hypothesis_template"] = kwargs["hypothesis_template"]
        post = {"multi_label": kwargs["multi_label"]} if "multi_label" in kwargs else {}
        return pre, {}, post

    def __call__(self, sequences: Any, *args: Any, **kwargs: Any):
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise ValueError(f"Unable to understand extra arguments {args}")
        return super().__call__(sequences, **kwargs)

    def _tokenize_pair(self, premise: str, hypothesis: str) -> dict:
        if self.tokenizer.pad_token is None:
            logger.error("Tokenizer was not supporting padding necessary for zero-shot, attempting to use `pad_token=eos_token`")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            enc = self.tokenizer([[premise, hypothesis]], padding=True, truncation="only_first")
        except Exception as err:
            if "too short" not in str(err):
                raise
            # the tokenizer refuses to cut a premise shorter than the cut: do not truncate
            enc = self.tokenizer([[premise, hypothesis]], padding=True, truncation=False)
        return {k: v[0] for k, v in enc.items() if isinstance(v, list)}

    def preprocess(self, inputs: Any, candidate_labels: Any = None, hypothesis_template: str = "This example is {}.") -> list[dict]:
        candidate_labels = _parse_labels(candidate_labels) if candidate_labels is not None else []
        sequences = [inputs] if isinstance(inputs, str) else inputs
        if len(candidate_labels) == 0 or len(sequences) == 0:
            raise ValueError("You must include at least one label and at least one sequence.")
        if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
            raise ValueError(
                f'The provided hypothesis_template "{hypothesis_template}" was not able to be formatted with the target '
                "labels. Make sure the passed template includes formatting syntax such as {} where the label should go."
            )
        sequence = sequences[0]
        return [
            {**self._tokenize_pair(sequence, hypothesis_template.format(label)), "candidate_label": label, "sequence": sequence}
            for label in candidate_labels
        ]

    def _forward(self, batch: dict) -> dict:
        return {"logits": np.asarray(self.model(**self.model_inputs(batch)).logits, dtype=np.float32)}

    def postprocess(self, model_outputs: list[dict], multi_label: bool = False):
        candidate_labels = [o["candidate_label"] for o in model_outputs]
        logits = np.stack([o["logits"] for o in model_outputs])  # [n_labels, n_classes]
        reshaped = logits.reshape((1, len(candidate_labels), -1))
        if multi_label or len(candidate_labels) == 1:
            entailment_id = self.entailment_id
            contradiction_id = -1 if entailment_id == 0 else 0
            entail_contr = reshaped[..., [contradiction_id, entailment_id]]
            scores = np.exp(entail_contr) / np.exp(entail_contr).sum(-1, keepdims=True)
            scores = scores[..., 1]
        else:
            entail = reshaped[..., self.entailment_id]
            scores = np.exp(entail) / np.exp(entail).sum(-1, keepdims=True)
        top = list(reversed(scores[0].argsort()))
        return {"sequence": model_outputs[0]["sequence"], "labels": [candidate_labels[i] for i in top],
                "scores": scores[0, top].tolist()}
