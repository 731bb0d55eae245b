"""Atomic file writes: write a temporary file next to the target, flush it to disk, then ``os.replace``.

A crash, a kill or a full disk while writing leaves the previous file untouched (plus, at worst, a hidden
``.<name>.<host>-<pid>.<random>.tmp`` file that nothing reads; the next save in that folder removes it once its
writer is gone, see ``remove_stale_temporaries``). Used by the checkpoint, config and tokenizer writers.

Saves into one folder are serialised by ``folder_lock`` (an advisory ``flock`` on the folder itself, so no lock
file is left behind): two processes saving a model into the same folder at once end with one complete save,
never a mix that deletes the other's files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
import logging
from typing import Callable, Iterator

logger = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_HOST = socket.gethostname().replace(".", "_").replace("-", "_")[:40] or "host"
#: a temporary file of ours written from another machine counts as stale after this long
STALE_AFTER_SECONDS = 24 * 3600


def _owner_tag() -> str:
    return f"{_HOST}-{os.getpid()}"


def temporary_path(target: str | os.PathLike) -> Path:
    """A new, empty, hidden temporary file in the target's folder (same file system, so rename is atomic),
    named ``.<target>.<host>-<pid>.<random>.tmp`` so a later save can tell a dead writer's leftovers."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{_owner_tag()}.", suffix=TMP_SUFFIX, dir=target.parent)
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


def stage_texts(texts: dict[str | os.PathLike, str]) -> dict[Path, Path]:
    """Write each text to a flushed temporary file next to its target; {target: temporary}. On any error the
    temporaries written so far are removed. ``commit_staged`` renames them into place."""
    staged: dict[Path, Path] = {}
    try:
        for target, text in texts.items():
            staged[Path(target)] = tmp = temporary_path(target)
            with open(tmp, "wb") as f:
                f.write(text.encode("utf-8"))
            fsync_path(tmp)
    except BaseException:
        abort_staged(staged)
        raise
    return staged


def commit_staged(staged: dict[Path, Path]) -> None:
    """Rename staged temporaries over their targets, in order."""
    for target, tmp in staged.items():
        os.replace(tmp, target)
    for folder in dict.fromkeys(target.parent for target in staged):
        fsync_dir(folder)


def abort_staged(staged: dict[Path, Path]) -> None:
    for tmp in staged.values():
        remove_quietly(tmp)


def atomic_write_texts(texts: dict[str | os.PathLike, str]) -> None:
    """Write several files as one: all are written in full under temporary names before any is renamed into
    place (in ``texts`` order), so a full disk part-way changes none of them."""
    commit_staged(stage_texts(texts))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or nonsense): leave the file alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike, is_ours: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files ``temporary_path`` made in ``folder`` for targets that ``is_ours(name)``
    accepts and whose writer is gone (a process of this host that no longer runs, or a file from another host
    untouched for a day): what a SIGKILL mid-save leaves. A live concurrent save's file is kept. Returns the
    removed paths."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        name = path.name
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        parts = name[1 : -len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not is_ours(parts[0]):
            continue
        host, _, pid = parts[1].rpartition("-")
        if not (host and pid.isdigit()):
            continue  # not one of our temporary files
        try:
            if host == _HOST:
                stale = not _pid_alive(int(pid))
            else:
                stale = time.time() - path.stat().st_mtime > STALE_AFTER_SECONDS
        except OSError:
            continue
        if stale:
            remove_quietly(path)
            removed.append(path)
    if removed:
        logger.info("removed %d temporary files left by interrupted saves in %s", len(removed), folder)
    return removed


_held: dict[str, list] = {}  # real folder path -> [fd, depth, owning thread]
_held_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (``flock`` on the folder itself): one save at a time per
    folder across processes and threads. Re-entrant within a thread; a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks on folders
        yield
        return
    key = os.path.realpath(folder)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[2] == me:
            entry[1] += 1
    if entry is not None and entry[2] == me:
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:  # a file system without flock (some network mounts): save without the lock
            logger.warning("cannot lock %s (%s); saving without protection against concurrent saves", key, err)
            yield
            return
        with _held_guard:
            _held[key] = [fd, 1, me]
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
