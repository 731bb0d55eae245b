"""text-classification / sentiment-analysis: labels and scores from a sequence-classification head."""

from __future__ import annotations

import enum
import warnings
from typing import Any

import numpy as np

from .base import Pipeline, sigmoid, softmax


class ClassificationFunction(str, enum.Enum):
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    NONE = "none"


class TextClassificationPipeline(Pipeline):
    """``classifier(text)`` -> ``[{"label", "score"}]`` (Transformers 4.x: a one-item list for one string without
    ``top_k``); ``top_k=k`` -> the k best, sorted (``top_k=None``: every label); text pairs as
    ``{"text": ..., "text_pair": ...}``. ``function_to_apply``: "default", "sigmoid", "softmax", "none"."""

    def _sanitize_parameters(self, return_all_scores=None, function_to_apply=None, top_k="", **tokenizer_kwargs):
        post: dict[str, Any] = {}
        config_all = getattr(self.config, "return_all_scores", None)
        if config_all is not None and return_all_scores is None:
            return_all_scores = config_all
        if isinstance(top_k, int) or top_k is None:
            post["top_k"] = top_k
            post["_legacy"] = False
        elif return_all_scores is not None:
            warnings.warn("`return_all_scores` is deprecated: use `top_k=None` (all) or `top_k=1` instead.", UserWarning)
            post["top_k"] = None if return_all_scores else 1
        if isinstance(function_to_apply, str) and function_to_apply != "default":
            function_to_apply = ClassificationFunction(function_to_apply.lower())
        elif function_to_apply == "default":
            function_to_apply = None
        if function_to_apply is not None:
            post["function_to_apply"] = function_to_apply
        return tokenizer_kwargs, {}, post

    def __call__(self, inputs: Any, **kwargs: Any):
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return [result]  # Transformers' legacy shape: a list even for one string
        return result

    def preprocess(self, inputs: Any, **tokenizer_kwargs: Any) -> list[dict]:
        if isinstance(inputs, dict):
            return self.encode(inputs["text"], inputs.get("text_pair"), **tokenizer_kwargs)[:1]
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list) and len(inputs[0]) == 2:
            return self.encode(inputs[0][0], inputs[0][1], **tokenizer_kwargs)[:1]
        if isinstance(inputs, list):
            raise ValueError(
                "The pipeline received invalid inputs, if you are trying to send text pairs, you can try to send a "
                'dictionary `{"text": "My text", "text_pair": "My pair"}` in order to send a text pair.'
            )
        return self.encode(inputs, **tokenizer_kwargs)[:1]

    def _forward(self, batch: dict) -> dict:
        return {"logits": np.asarray(self.model(**self.model_inputs(batch)).logits, dtype=np.float32)}

    def default_function(self) -> ClassificationFunction:
        config = self.config
        if config.problem_type == "regression":
            return ClassificationFunction.NONE
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return ClassificationFunction.SIGMOID
        if config.problem_type == "single_label_classification" or config.num_labels > 1:
            return ClassificationFunction.SOFTMAX
        return ClassificationFunction(getattr(config, "function_to_apply", "none"))

    def postprocess(self, outputs: dict, function_to_apply=None, top_k=1, _legacy=True):
        function_to_apply = function_to_apply or self.default_function()
        logits = outputs["logits"]
        if function_to_apply == ClassificationFunction.SIGMOID:
            scores = sigmoid(logits)
        elif function_to_apply == ClassificationFunction.SOFTMAX:
            scores = softmax(logits)
        elif function_to_apply == ClassificationFunction.NONE:
            scores = logits
        else:
            raise ValueError(f"Unrecognized `function_to_apply` argument: {function_to_apply}")
        id2label = self.config.id2label
        if top_k == 1 and _legacy:
            return {"label": id2label[int(scores.argmax())], "score": scores.max().item()}
        records = [{"label": id2label[i], "score": score.item()} for i, score in enumerate(scores)]
        if not _legacy:
            records.sort(key=lambda x: x["score"], reverse=True)
            if top_k is not None:
                records = records[:top_k]
        return records
