"""BatchEncoding: the dictionary a tokenizer call returns, with the token <-> word <-> character maps of the Rust
``tokenizers.Encoding`` objects behind it, and numpy / jax conversion."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
from tokenizers import Encoding

TENSOR_TYPES = (None, "np", "jax")


class CharSpan(NamedTuple):
    """A span of characters in the original string: ``start`` included, ``end`` excluded."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """A span of tokens in an encoded sequence: ``start`` included, ``end`` excluded."""

    start: int
    end: int


def check_tensor_type(return_tensors: Any) -> Optional[str]:
    """Normalise ``return_tensors`` to None, 'np' or 'jax'; anything else is a ValueError that lists the choices."""
    if return_tensors is None or return_tensors in ("np", "jax"):
        return return_tensors
    hint = ""
    if return_tensors in ("pt", "tf", "mlx"):
        hint = " fxformers returns numpy or jax arrays; convert them yourself if you need another framework."
    raise ValueError(f"Unknown return_tensors={return_tensors!r}: use 'np', 'jax' or None (Python lists).{hint}")


def _as_array(key: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 0:
        one_dim = key in ("length", "overflow_to_sample_mapping")
        return np.zeros((0,) if one_dim else (0, 0), dtype=np.int64)
    try:
        arr = np.asarray(value)
    except ValueError:
        arr = None
    if arr is None or arr.dtype == object:
        raise ValueError(
            f"Unable to create an array for `{key}`: the sequences have different lengths. Pass padding=True "
            "(and truncation=True to cap the length) to get rectangular [batch, length] arrays."
        )
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.int64, copy=False)
    return arr


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict of ``input_ids``, ``attention_mask`` ... (also readable as attributes),
    plus ``encodings``, the ``tokenizers.Encoding`` of each row, which back ``tokens()``, ``word_ids()``,
    ``sequence_ids()``, ``char_to_token()`` and friends.

    ``be[str]`` is a field, ``be[int]`` / ``be[slice]`` the ``Encoding`` objects of those rows (as in Transformers;
    a BatchEncoding without encodings slices its fields instead).
    """

    def __init__(
        self,
        data: Optional[dict] = None,
        encoding: Optional[Encoding | Sequence[Encoding]] = None,
        tensor_type: Optional[str] = None,
        n_sequences: Optional[int] = None,
    ):
        super().__init__(data or {})
        if isinstance(encoding, Encoding):
            encoding = [encoding]
        self._encodings = list(encoding) if encoding is not None else None
        if n_sequences is None and self._encodings:
            n_sequences = self._encodings[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type)

    # ---- dict / attribute access ----
    def __getitem__(self, item):
        if isinstance(item, str):
            return dict.__getitem__(self, item)
        if self._encodings is not None and isinstance(item, (int, slice)):
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError(
            f"Invalid key {item!r}: use a field name (str), a row index (int, for its tokenizers.Encoding) or a slice."
        )

    def __getattr__(self, item: str):
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return dict.__getitem__(self, item)
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {item!r}; it holds {sorted(self.keys())}") from None

    def __getstate__(self):
        return {"data": dict(self), "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state):
        self.update(state["data"])
        self._encodings = state["encodings"]
        self._n_sequences = state.get("n_sequences")

    @property
    def data(self) -> dict:
        return dict(self)

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    @property
    def encodings(self) -> Optional[list[Encoding]]:
        """The ``tokenizers.Encoding`` of every row (overflow windows are rows of their own)."""
        return self._encodings

    @property
    def n_sequences(self) -> Optional[int]:
        """1 for single sequences, 2 for pairs, None when unknown."""
        return self._n_sequences

    # ---- token / word / character maps ----
    def _need_encodings(self, what: str) -> list[Encoding]:
        if not self._encodings:
            raise ValueError(f"{what}() needs the tokenizers.Encoding objects, and this BatchEncoding holds none.")
        return self._encodings

    def _batch_and_index(self, batch_or_index: int, index: Optional[int]) -> tuple[int, int]:
        if index is not None:
            return batch_or_index, index
        if len(self._encodings) > 1:
            raise ValueError("This batch holds several rows: pass the row index first, e.g. char_to_token(row, char).")
        index = batch_or_index
        return 0, index

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index``."""
        return self._need_encodings("tokens")[batch_index].tokens

    def sequence_ids(self, batch_index: int = 0) -> list[Optional[int]]:
        """For each token of row ``batch_index``: 0 (first text), 1 (second text) or None (special/padding)."""
        return self._need_encodings("sequence_ids")[batch_index].sequence_ids

    def word_ids(self, batch_index: int = 0) -> list[Optional[int]]:
        """For each token of row ``batch_index``: the index of its word, or None for special tokens and padding."""
        return self._need_encodings("word_ids")[batch_index].word_ids

    def token_to_sequence(self, batch_or_token_index: int, token_index: Optional[int] = None) -> int:
        self._need_encodings("token_to_sequence")
        b, t = self._batch_and_index(batch_or_token_index, token_index)
        if t < 0:
            t = self._seq_len + t
        return self._encodings[b].token_to_sequence(t)

    def token_to_word(self, batch_or_token_index: int, token_index: Optional[int] = None) -> Optional[int]:
        self._need_encodings("token_to_word")
        b, t = self._batch_and_index(batch_or_token_index, token_index)
        if t < 0:
            t = self._seq_len + t
        return self._encodings[b].token_to_word(t)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: Optional[int] = None, sequence_index: int = 0
    ) -> Optional[TokenSpan]:
        self._need_encodings("word_to_tokens")
        b, w = self._batch_and_index(batch_or_word_index, word_index)
        if w < 0:
            w = self._seq_len + w
        span = self._encodings[b].word_to_tokens(w, sequence_index)
        return TokenSpan(*span) if span is not None else None

    def token_to_chars(self, batch_or_token_index: int, token_index: Optional[int] = None) -> Optional[CharSpan]:
        """The character span of a token in its original string, or None for special tokens."""
        self._need_encodings("token_to_chars")
        b, t = self._batch_and_index(batch_or_token_index, token_index)
        span = self._encodings[b].token_to_chars(t)
        return CharSpan(*span) if span is not None else None

    def char_to_token(
        self, batch_or_char_index: int, char_index: Optional[int] = None, sequence_index: int = 0
    ) -> Optional[int]:
        """The index of the token that covers character ``char_index`` of text ``sequence_index`` (0 or 1)."""
        self._need_encodings("char_to_token")
        b, c = self._batch_and_index(batch_or_char_index, char_index)
        return self._encodings[b].char_to_token(c, sequence_index)

    def word_to_chars(
        self, batch_or_word_index: int, word_index: Optional[int] = None, sequence_index: int = 0
    ) -> Optional[CharSpan]:
        self._need_encodings("word_to_chars")
        b, w = self._batch_and_index(batch_or_word_index, word_index)
        span = self._encodings[b].word_to_chars(w, sequence_index)
        return CharSpan(*span) if span is not None else None

    def char_to_word(
        self, batch_or_char_index: int, char_index: Optional[int] = None, sequence_index: int = 0
    ) -> Optional[int]:
        self._need_encodings("char_to_word")
        b, c = self._batch_and_index(batch_or_char_index, char_index)
        return self._encodings[b].char_to_word(c, sequence_index)

    @property
    def _seq_len(self) -> int:
        return len(self._encodings[0].ids)

    # ---- conversion ----
    def convert_to_tensors(self, tensor_type: Optional[str] = None) -> "BatchEncoding":
        """Turn every field into a numpy ('np') or jax ('jax') array in place; None leaves Python lists."""
        tensor_type = check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        for key in list(self.keys()):
            arr = _as_array(key, dict.__getitem__(self, key))
            if tensor_type == "jax":
                import jax.numpy as jnp

                arr = jnp.asarray(arr)
            dict.__setitem__(self, key, arr)
        return self

    def numpy(self) -> "BatchEncoding":
        """A copy whose fields are numpy arrays."""
        return BatchEncoding({k: np.asarray(v) for k, v in self.items()}, self._encodings, "np", self._n_sequences)

    def jax(self) -> "BatchEncoding":
        """A copy whose fields are jax arrays."""
        return BatchEncoding(dict(self), self._encodings, "jax", self._n_sequences)

    def __repr__(self) -> str:
        return f"BatchEncoding({dict.__repr__(self)})"
