"""Tensors read (or computed) one at a time, so no whole model needs to sit in host memory.

``LazyTensor`` is a shape, a dtype and a thunk that produces the array. Loading wraps every tensor of a checkpoint
in one (``open_state_dict`` in ``loading.py``): the model builder reads, converts and places each tensor on its
device before the next is read. Saving goes the other way: ``save_state_dict`` accepts lazy tensors and writes
each one's bytes as soon as it is produced (a sharded model gathers one parameter at a time).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class LazyTensor:
    """An array that is read or computed only when ``materialize()`` is called."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def materialize(self) -> np.ndarray:
        return np.asarray(self.load())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.materialize()
        return array if dtype is None else array.astype(dtype)


def materialize(value: Any) -> np.ndarray:
    """A numpy array from a numpy/jax array or a ``LazyTensor``."""
    return value.materialize() if isinstance(value, LazyTensor) else np.asarray(value)


class LazyStateDict(Mapping[str, Any]):
    """``{pytorch key: tensor}`` whose tensors are read part by part (one shard file after another).

    ``keys`` are known up front (from headers or the sharded index). ``items()`` opens each part in turn and yields
    its tensors (``LazyTensor``s, read when materialized, or arrays of formats read whole, handed over and dropped
    as they are taken), so a consumer that places each tensor before taking the next never holds the checkpoint.
    """

    def __init__(self, keys: Iterable[str], parts: Sequence[Callable[[], dict[str, Any]]], source: str):
        self._keys = list(dict.fromkeys(keys))
        self._parts = list(parts)
        self.source = source

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in set(self._keys)

    def __getitem__(self, key: str) -> Any:
        for k, v in self.items():
            if k == key:
                return v
        raise KeyError(key)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        for part in self._parts:
            tensors = part()
            while tensors:  # hand each tensor over and forget it
                key = next(iter(tensors))
                yield key, tensors.pop(key)

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (v for _, v in self.items())
