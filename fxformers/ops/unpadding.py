"""Unpadded execution: run the position-wise layers of an encoder on the real tokens only.

A padded batch [B, T] of short texts is mostly padding, and every dense layer (Q/K/V/output projections, the
feed-forward block, LayerNorm) costs the same for a padding token as for a real one. In unpadded mode the encoder
gathers the real tokens into a packed [N, D] array (N = the real-token count, rounded up to a bucket so that
similar batches share a compilation), runs the dense layers there, and scatters back to [B, T] only around the
attention op, which needs the per-row layout. Real tokens get the results of the padded computation (the
attention mask already kept padding out of them); padding positions come out as zeros instead of the values the
padded model computes for pad tokens, which is why the mode is opt-in (``model(..., unpad_inputs=True)``) and used
by the pipelines, which never read padding positions.

Rows must be right-padded (each mask row is ones then zeros): the heads read position 0 as the first token.

    >>> unpadded_length(700)          # 8 buckets per power of two: under 1/8 of the work is filler
    704
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

MIN_TOKENS = 16


def unpadded_length(n: int) -> int:
    """The packed token count for ``n`` real tokens: the next multiple of 1/8 of the power of two at or below n
    (at least MIN_TOKENS, in steps of at least 8), so the filler stays under max(n / 8, 8) tokens and each octave
    has 8 shapes."""
    n = max(int(n), MIN_TOKENS)
    step = max(MIN_TOKENS // 2, (1 << (n.bit_length() - 1)) // 8)
    return -(-n // step) * step


def check_right_padded(attention_mask: np.ndarray) -> int:
    """The number of real tokens in a right-padded [..., T] 0/1 mask; a clear error for any other layout."""
    mask = np.asarray(attention_mask).reshape(-1, np.shape(attention_mask)[-1]) != 0
    counts = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < counts[:, None]):
        raise ValueError(
            "unpad_inputs=True needs right-padded rows (each attention_mask row is ones, then zeros): pad on the "
            "right (tokenizer.padding_side = 'right') or call the model without unpad_inputs."
        )
    return int(counts.sum())


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a [B, T] batch sit in the packed [N] layout (built inside the jitted function).

    ``index[i]`` is the flat position (row * T + column) of packed token i; filler slots past the real tokens hold
    B * T, out of range, so ``pack`` reads zeros for them and ``unpack`` drops them.
    """

    index: jax.Array  # [N] int32
    batch: int
    length: int

    @classmethod
    def from_mask(cls, attention_mask, size: int) -> "Packing":
        batch, length = attention_mask.shape
        (index,) = jnp.nonzero(attention_mask.reshape(-1), size=size, fill_value=batch * length)
        return cls(index.astype(jnp.int32), batch, length)

    @classmethod
    def start(cls, x, attention_mask, size: int):
        """An encoder's entry into unpadded mode: (embeddings [B, T, D] packed to [N, D], the Packing), or
        (x, None) unchanged when ``size`` is 0 (padded mode)."""
        if not size:
            return x, None
        packing = cls.from_mask(attention_mask, size)
        return packing.pack(x), packing

    def pack(self, x):
        """[B, T, ...] -> [N, ...] (zeros in the filler slots)."""
        flat = x.reshape((self.batch * self.length,) + x.shape[2:])
        return jnp.take(flat, self.index, axis=0, mode="fill", fill_value=0)

    def unpack(self, x):
        """[N, ...] -> [B, T, ...], zeros at padding positions."""
        flat = jnp.zeros((self.batch * self.length,) + x.shape[1:], x.dtype)
        return flat.at[self.index].set(x, mode="drop").reshape((self.batch, self.length) + x.shape[1:])
