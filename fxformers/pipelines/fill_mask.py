"""fill-mask: the most likely tokens for each mask token, with the filled-in sequence."""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from .base import Pipeline, decode, softmax

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    """``unmasker("Paris is the [MASK] of France.")`` -> ``[{"score", "token", "token_str", "sequence"}] * top_k``
    (one list per mask when the text has several). ``top_k`` (default 5), ``targets`` (restrict to these words)."""

    sequence_outputs = ("logits",)

    def _sanitize_parameters(self, top_k: Optional[int] = None, targets: Any = None, tokenizer_kwargs: Optional[dict] = None):
        pre = {"tokenizer_kwargs": tokenizer_kwargs} if tokenizer_kwargs is not None else {}
        post: dict[str, Any] = {}
        if targets is not None:
            post["target_ids"] = self.get_target_ids(targets)
        if top_k is not None:
            post["top_k"] = top_k
        if self.tokenizer.mask_token_id is None:
            raise ValueError("fill-mask: the tokenizer does not define a `mask_token`.")
        return pre, {}, post

    def __call__(self, inputs: Any, **kwargs: Any):
        outputs = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            return outputs[0]
        return outputs

    def get_target_ids(self, targets: Any) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        vocab = self.tokenizer.get_vocab()
        target_ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                ids = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                     return_token_type_ids=False, max_length=1, truncation=True)["input_ids"]
                if len(ids) == 0:
                    logger.warning("The specified target token `%s` does not exist in the model vocabulary. We cannot "
                                   "replace it with anything meaningful, ignoring it", target)
                    continue
                id_ = ids[0]
                logger.warning("The specified target token `%s` does not exist in the model vocabulary. Replacing with "
                               "`%s`.", target, self.tokenizer.convert_ids_to_tokens(id_))
            target_ids.append(id_)
        target_ids = list(set(target_ids))
        if not target_ids:
            raise ValueError("At least one target must be provided when passed.")
        return np.array(target_ids)

    def preprocess(self, inputs: Any, tokenizer_kwargs: Optional[dict] = None) -> list[dict]:
        features = self.encode(inputs, **(tokenizer_kwargs or {}))[:1]
        if self.tokenizer.mask_token_id not in features[0]["input_ids"]:
            raise ValueError(f"fill-mask: no mask_token ({self.tokenizer.mask_token}) found on the input {inputs!r}.")
        return features

    def _forward(self, batch: dict) -> dict:
        return {"logits": np.asarray(self.model(**self.model_inputs(batch)).logits, dtype=np.float32)}

    def postprocess(self, outputs: dict, top_k: int = 5, target_ids: Optional[np.ndarray] = None):
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        input_ids = np.asarray(outputs["input_ids"])
        masked_index = np.nonzero(input_ids == self.tokenizer.mask_token_id)[0]
        probs = softmax(outputs["logits"][masked_index])  # [M, V]
        if target_ids is not None:
            probs = probs[..., target_ids]
        # torch.topk order: descending values (ties: lower index first)
        predictions = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
        values = np.take_along_axis(probs, predictions, axis=-1)
        single_mask = values.shape[0] == 1
        result = []
        for i, (row_values, row_predictions) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(row_values, row_predictions):
                tokens = input_ids.copy()
                if target_ids is not None:
                    p = target_ids[p].tolist()
                tokens[masked_index[i]] = p
                tokens = tokens[np.where(tokens != self.tokenizer.pad_token_id)]
                sequence = decode(self.tokenizer, tokens, skip_special_tokens=single_mask)
                row.append({"score": v, "token": p, "token_str": decode(self.tokenizer, [p]), "sequence": sequence})
            result.append(row)
        return result[0] if single_mask else result
