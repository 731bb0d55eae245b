"""Data collators with Transformers' names and behaviour: a list of examples (dicts) in, a dict of numpy arrays out.

``tokenizer`` is anything with Transformers' tokenizer API (``pad``, ``pad_token_id``, ``mask_token_id``,
``get_special_tokens_mask``, ``padding_side``, ``len()``): the fxformers tokenizer or a transformers one.
With the same ``seed``, ``DataCollatorForLanguageModeling`` draws exactly what Transformers' numpy collator draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import numpy as np


def _to_dict(example: Any) -> dict:
    return dict(example) if isinstance(example, Mapping) else dict(vars(example))


def _rename_labels(batch: dict) -> dict:
    for old in ("label", "label_ids"):
        if old in batch:
            batch["labels"] = batch.pop(old)
    return batch


def _as_numpy(batch: Mapping) -> dict:
    return {k: (np.asarray(v) if v is not None else None) for k, v in dict(batch).items()}


def default_data_collator(features: list, return_tensors: str = "np") -> dict:
    """Stack examples that need no padding: ``label``/``label_ids`` become ``labels`` (int64 for ints, float32
    otherwise); string and None fields are dropped."""
    if return_tensors != "np":
        raise ValueError(f"fxformers collators return numpy arrays; got return_tensors={return_tensors!r}.")
    features = [_to_dict(f) for f in features]
    first = features[0]
    batch: dict = {}
    if first.get("label") is not None:
        label = first["label"].item() if isinstance(first["label"], np.ndarray) else first["label"]
        dtype = np.int64 if isinstance(label, (int, np.integer)) else np.float32
        batch["labels"] = np.array([f["label"] for f in features], dtype=dtype)
    elif first.get("label_ids") is not None:
        if isinstance(first["label_ids"], np.ndarray):
            batch["labels"] = np.stack([f["label_ids"] for f in features])
        else:
            dtype = np.int64 if isinstance(first["label_ids"][0], (int, np.integer)) else np.float32
            batch["labels"] = np.array([f["label_ids"] for f in features], dtype=dtype)
    for key, value in first.items():
        if key in ("label", "label_ids") or value is None or isinstance(value, str):
            continue
        batch[key] = np.stack([np.asarray(f[key]) for f in features])
    return batch


@dataclass
class DefaultDataCollator:
    return_tensors: str = "np"

    def __call__(self, features: list, return_tensors: Optional[str] = None) -> dict:
        return default_data_collator(features, return_tensors or self.return_tensors)


@dataclass
class DataCollatorWithPadding:
    """Pad every field with ``tokenizer.pad`` (to the longest, to ``max_length``, or not at all) and rename
    ``label``/``label_ids`` to ``labels``."""

    tokenizer: Any
    padding: Union[bool, str] = True
    max_length: Optional[int] = None
    pad_to_multiple_of: Optional[int] = None
    return_tensors: str = "np"

    def __call__(self, features: list) -> dict:
        batch = self.tokenizer.pad(
            [_to_dict(f) for f in features], padding=self.padding, max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="np",
        )
        return _rename_labels(_as_numpy(batch))


def _pad_labels(labels: list, length: int, pad_id: int, side: str) -> np.ndarray:
    out = np.full((len(labels), length), pad_id, dtype=np.int64)
    for i, label in enumerate(labels):
        label = np.asarray(label, dtype=np.int64)
        if len(label) > length:
            raise ValueError(f"Example {i} has {len(label)} labels, more than the padded length {length}; truncate "
                             "the labels when tokenizing (or raise max_length).")
        if side == "right":
            out[i, : len(label)] = label
        else:
            out[i, length - len(label):] = label
    return out


def _round_up(n: int, multiple: Optional[int]) -> int:
    return n if not multiple else -(-n // multiple) * multiple


@dataclass
class DataCollatorForTokenClassification:
    """Pad inputs with ``tokenizer.pad`` and per-token labels with ``label_pad_token_id`` to the same length."""

    tokenizer: Any
    padding: Union[bool, str] = True
    max_length: Optional[int] = None
    pad_to_multiple_of: Optional[int] = None
    label_pad_token_id: int = -100
    return_tensors: str = "np"

    def __call__(self, features: list) -> dict:
        features = [_to_dict(f) for f in features]
        label_name = "label" if "label" in features[0] else "labels"
        labels = [f[label_name] for f in features] if label_name in features[0] else None
        batch = _as_numpy(self.tokenizer.pad(
            [{k: v for k, v in f.items() if k != label_name} for f in features], padding=self.padding,
            max_length=self.max_length, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="np",
        ))
        if labels is not None:
            batch["labels"] = _pad_labels(labels, batch["input_ids"].shape[1], self.label_pad_token_id,
                                          self.tokenizer.padding_side)
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    """Pad inputs with ``tokenizer.pad`` and ``labels`` with ``label_pad_token_id`` (to the longest label, or
    ``max_length`` with ``padding="max_length"``, rounded up to ``pad_to_multiple_of``). With a ``model`` that has
    ``prepare_decoder_input_ids_from_labels``, also returns ``decoder_input_ids``."""

    tokenizer: Any
    model: Any = None
    padding: Union[bool, str] = True
    max_length: Optional[int] = None
    pad_to_multiple_of: Optional[int] = None
    label_pad_token_id: int = -100
    return_tensors: str = "np"

    def __call__(self, features: list, return_tensors: Optional[str] = None) -> dict:
        features = [_to_dict(f) for f in features]
        label_name = "label" if "label" in features[0] else "labels"
        labels = [f[label_name] for f in features] if label_name in features[0] else None
        if labels is not None and all(label is None for label in labels):
            labels = None
        batch = _as_numpy(self.tokenizer.pad(
            [{k: v for k, v in f.items() if k != label_name} for f in features], padding=self.padding,
            max_length=self.max_length, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="np",
        ))
        padding = getattr(self.padding, "value", self.padding)
        if labels is None:
            batch["labels"] = None
        elif padding is False or padding == "do_not_pad":
            batch["labels"] = [np.asarray(label, dtype=np.int64) for label in labels]
        else:
            to_max = padding == "max_length" and self.max_length is not None
            length = _round_up(self.max_length if to_max else max(len(l) for l in labels), self.pad_to_multiple_of)
            batch["labels"] = _pad_labels(labels, length, self.label_pad_token_id, self.tokenizer.padding_side)
            if self.model is not None and hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
                batch["decoder_input_ids"] = np.asarray(self.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"]))
        return batch


def _collate_ids(examples: list, tokenizer: Any, pad_to_multiple_of: Optional[int]) -> np.ndarray:
    """Lists of token ids -> [B, T] padded with ``pad_token_id`` on the tokenizer's padding side."""
    examples = [np.asarray(e, dtype=np.int64) for e in examples]
    length = max(len(e) for e in examples)
    if all(len(e) == length for e in examples) and (not pad_to_multiple_of or length % pad_to_multiple_of == 0):
        return np.stack(examples)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"Padding needs a pad token and {type(tokenizer).__name__} has none; set tokenizer.pad_token.")
    return _pad_labels(examples, _round_up(length, pad_to_multiple_of), tokenizer.pad_token_id, tokenizer.padding_side)


@dataclass
class DataCollatorForLanguageModeling:
    """Masked (``mlm=True``) or causal (``mlm=False``) language-modelling batches.

    MLM: each non-special token is selected with ``mlm_probability``; of those, ``mask_replace_prob`` (80%) become
    ``[MASK]``, ``random_replace_prob`` (10%) a random token, the rest stay; ``labels`` hold the original id at
    selected positions and -100 elsewhere. Special tokens (from the examples' ``special_tokens_mask`` or
    ``tokenizer.get_special_tokens_mask``) and padding are never selected.
    CLM: ``labels`` are the input ids with padding set to -100 (the model shifts them).
    """

    tokenizer: Any
    mlm: bool = True
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: Optional[int] = None
    return_tensors: str = "np"
    seed: Optional[int] = None

    def __post_init__(self):
        if self.mlm:
            if getattr(self.tokenizer, "mask_token_id", None) is None:
                raise ValueError("This tokenizer has no mask token, which masked language modelling needs; "
                                 "pass mlm=False to train a causal language model instead.")
            if not 0 <= self.mlm_probability <= 1:
                raise ValueError(f"mlm_probability must be in [0, 1], got {self.mlm_probability}.")
        if not (0 <= self.mask_replace_prob <= 1 and 0 <= self.random_replace_prob <= 1):
            raise ValueError("mask_replace_prob and random_replace_prob must be in [0, 1].")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError("mask_replace_prob + random_replace_prob must not exceed 1.")
        self.generator = None

    def __call__(self, examples: list) -> dict:
        if self.seed is not None and self.generator is None:
            self.generator = np.random.default_rng(self.seed)
        if isinstance(examples[0], Mapping):
            batch = _as_numpy(self.tokenizer.pad([dict(e) for e in examples], return_tensors="np",
                                                 pad_to_multiple_of=self.pad_to_multiple_of))
        else:
            batch = {"input_ids": _collate_ids(examples, self.tokenizer, self.pad_to_multiple_of)}
        special_tokens_mask = batch.pop("special_tokens_mask", None)
        batch.pop("offset_mapping", None)
        if self.mlm:
            batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"], special_tokens_mask)
        else:
            labels = np.copy(batch["input_ids"])
            if self.tokenizer.pad_token_id is not None:
                labels[labels == self.tokenizer.pad_token_id] = -100
            batch["labels"] = labels
        return batch

    def _binomial(self, p, shape):
        draw = self.generator.binomial if self.generator is not None else np.random.binomial
        return draw(1, p, size=shape).astype(bool)

    def mask_tokens(self, inputs: np.ndarray, special_tokens_mask: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """(masked input ids, labels) for ``inputs`` [B, T]; the same draws as Transformers' numpy collator."""
        inputs = np.array(inputs, copy=True)
        labels = np.copy(inputs)
        probability = np.full(labels.shape, self.mlm_probability)
        if special_tokens_mask is None:
            special_tokens_mask = [self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                                   for row in labels.tolist()]
        probability[np.asarray(special_tokens_mask, dtype=bool)] = 0
        masked = self._binomial(probability, probability.shape)
        labels[~masked] = -100
        replaced = self._binomial(self.mask_replace_prob, labels.shape) & masked
        inputs[replaced] = self.tokenizer.mask_token_id
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return inputs, labels
        scaled = self.random_replace_prob / (1 - self.mask_replace_prob)
        random = self._binomial(scaled, labels.shape) & masked & ~replaced
        count = int(np.count_nonzero(random))
        if self.generator is not None:
            words = self.generator.integers(low=0, high=len(self.tokenizer), size=count, dtype=np.int64)
        else:
            words = np.random.randint(low=0, high=len(self.tokenizer), size=count, dtype=np.int64)
        inputs[random] = words
        return inputs, labels
