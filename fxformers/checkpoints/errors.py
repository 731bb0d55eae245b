"""Exceptions raised by the checkpoint readers and writers.

Every problem with a checkpoint file (corrupt, truncated, not the format its name says, a shard missing) is a
``CheckpointError`` that names the file and says what to do. A PyTorch pickle that asks for anything outside the
state-dict allow-list is an ``UnsafeCheckpointError`` (a ``CheckpointError``), raised before any of it runs.
Both subclass ``OSError``, as Transformers' own "unable to load weights" errors do.
"""

from __future__ import annotations


class CheckpointError(OSError):
    """A checkpoint file is missing, unreadable, corrupt or not in the expected format."""

    def __init__(self, message: str):
        # One argument only: OSError(errno, strerror) would otherwise reinterpret a two-argument call.
        super().__init__(message)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The model exists but holds none of the weight files looked for (or an index names a missing shard)."""


class UnsafeCheckpointError(CheckpointError):
    """A PyTorch pickle names a global outside the state-dict allow-list; nothing in it was executed."""

    def __init__(self, message: str, *, file: str | None = None, global_name: str | None = None):
        super().__init__(message)
        self.file = file
        self.global_name = global_name
