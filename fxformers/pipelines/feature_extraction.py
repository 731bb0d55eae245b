"""feature-extraction: the base model's last hidden state for each token, as nested lists [1, T, D]."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Pipeline


class FeatureExtractionPipeline(Pipeline):
    """``extractor(text)`` -> ``[[[float] * D] * T]`` (``return_tensors=True``: a numpy array [1, T, D]).

    Call parameters: ``truncation`` (bool or strategy), ``tokenize_kwargs`` (dict for the tokenizer),
    ``return_tensors``.
    """

    sequence_outputs = ("last_hidden_state",)

    def _sanitize_parameters(self, truncation: Any = None, tokenize_kwargs: Optional[dict] = None,
                             return_tensors: Optional[bool] = None, **kwargs: Any):
        tokenize_kwargs = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in tokenize_kwargs:
                raise ValueError("truncation parameter defined twice (given as keyword argument as well as in tokenize_kwargs)")
            tokenize_kwargs["truncation"] = truncation
        if kwargs:
            raise TypeError(f"feature-extraction got unknown arguments {sorted(kwargs)}.")
        post = {} if return_tensors is None else {"return_tensors": return_tensors}
        return tokenize_kwargs, {}, post

    def preprocess(self, inputs: Any, **tokenize_kwargs: Any) -> list[dict]:
        if isinstance(inputs, dict):
            return self.encode(**inputs, **tokenize_kwargs)[:1]
        return self.encode(inputs, **tokenize_kwargs)[:1]

    def _forward(self, batch: dict) -> dict:
        out = self.model(**self.model_inputs(batch))
        return {"last_hidden_state": np.asarray(out.last_hidden_state, dtype=np.float32)}

    def postprocess(self, outputs: dict, return_tensors: bool = False):
        hidden = outputs["last_hidden_state"][None]  # [1, T, D]
        return hidden if return_tensors else hidden.tolist()
