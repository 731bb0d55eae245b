"""Atomic file writes: write a temporary file next to the target, flush it to disk, then ``os.replace``.

A crash, a kill or a full disk while writing leaves the previous file untouched (plus, at worst, a hidden
``.<name>.<random>.tmp`` file that nothing reads). Used by the checkpoint writer, and meant for config.json
writers and training checkpoints too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_path(target: str | os.PathLike) -> Path:
    """A new, empty, hidden temporary file in the target's folder (same file system, so rename is atomic)."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions a plain open() would
    return Path(name)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems and platforms refuse fsync on folders
    finally:
        os.close(fd)


def remove_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``target``, on error it is removed.

    >>> with atomic_path("out/config.json") as tmp:
    ...     tmp.write_text("{}")
    """
    target = Path(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one, never a partial one)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically; see ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode(encoding))
