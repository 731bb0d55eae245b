"""Padding-length buckets: a jitted model compiles once per input shape, so pad variable lengths to few shapes.

Powers of two up to ``multiple`` keep short inputs cheap (few buckets, little padding); past it, lengths round up
to a multiple of ``multiple``, which bounds the padding of long inputs to under ``multiple`` tokens where powers
of two could nearly double the work (a 260-token batch runs at 384, not 512, with ``multiple=128``).

    >>> [bucket_length(n, multiple=128) for n in (5, 17, 100, 129, 260)]
    [16, 32, 128, 256, 384]
    >>> bucket_length(300, max_length=384)   # capped at the model's limit
    384
"""

from __future__ import annotations

from typing import Optional


def bucket_length(n: int, *, multiple: Optional[int] = None, minimum: int = 16, max_length: Optional[int] = None) -> int:
    """The padded length for a batch whose longest row has ``n`` tokens.

    The next power of two, at least ``minimum``; above ``multiple`` (when given), the next multiple of it instead;
    capped at ``max_length`` (the model's position limit) but never below ``n`` (a longer input is the caller's
    error to report, not something to truncate silently).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"bucket_length needs a length >= 0, got {n}.")
    if multiple is not None and multiple <= 0:
        raise ValueError(f"multiple must be a positive number of tokens, got {multiple}.")
    padded = max(minimum, 1 << max(0, n - 1).bit_length())
    if multiple is not None and padded > multiple:
        padded = max(multiple, -(-n // multiple) * multiple)
    if max_length is not None and padded > max_length:
        padded = max(max_length, n)
    return padded


def bucket_lengths(max_length: int, *, multiple: Optional[int] = None, minimum: int = 16) -> list[int]:
    """Every bucket ``bucket_length`` can return for inputs up to ``max_length`` tokens, shortest first — the
    shapes to compile ahead of time (one warm-up call each) so that no request waits for a compilation."""
    out: list[int] = []
    n = 1
    while True:
        b = bucket_length(n, multiple=multiple, minimum=minimum, max_length=max_length)
        if not out or b != out[-1]:
            out.append(b)
        if b >= max_length:
            return out
        n = b + 1
