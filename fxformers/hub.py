"""Name or folder -> local files.

A model is named either by a local folder or by a hub id (``org/name``). Hub ids are looked up first in the
Hugging Face cache (``cache_dir=`` > ``HF_HUB_CACHE`` > ``HF_HOME``/hub > ``~/.cache/huggingface/hub``), laid out
as ``models--org--name/{refs,snapshots}``; only when the file is not cached and ``HF_HUB_OFFLINE`` is not set is it
downloaded through ``huggingface_hub``. Environment variables are read at call time, not import time, so a
process (or a test) may change them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

_TRUE = {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) asks for no network."""
    return any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir(cache_dir: Optional[str | os.PathLike] = None) -> Path:
    """The hub cache folder that applies now."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _cached_snapshot(repo_id: str, cache: Path, revision: Optional[str]) -> Optional[Path]:
    """The snapshot folder of ``repo_id`` at ``revision`` (a branch, tag or commit) in ``cache``, if present."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir():
        return None
    revision = revision or "main"
    ref = repo_dir / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


class ModelNotFoundError(OSError):
    """The name is neither a local folder nor a cached or downloadable hub repository."""


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    cache_dir: Optional[str | os.PathLike] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    local_files_only: bool = False,
) -> Optional[Path]:
    """Local path of ``filename`` in the model ``name_or_path``, or None when the model lacks that file.

    Raises ModelNotFoundError (naming the model and the places searched) when the model itself cannot be found.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        candidate = path / filename
        return candidate if candidate.is_file() else None
    repo_id = str(name_or_path)
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")) or "\\" in repo_id:
        raise ModelNotFoundError(f"{repo_id!r} is not a folder, and it looks like a path, so it was not looked up on the hub.")
    cache = hub_cache_dir(cache_dir)
    snapshot = _cached_snapshot(repo_id, cache, revision)
    if snapshot is not None:
        candidate = snapshot / filename
        if candidate.is_file():
            return candidate
        if (cache / ("models--" + repo_id.replace("/", "--")) / ".no_exist" / snapshot.name / filename).exists():
            return None
    if local_files_only or is_offline():
        if snapshot is not None:
            return None  # the repository is cached, this file is not: treat as absent
        raise ModelNotFoundError(
            f"{repo_id!r} is not a local folder and is not in the Hugging Face cache at {cache} "
            "(offline: HF_HUB_OFFLINE is set or local_files_only=True). Pass the path of a folder that holds "
            "config.json and the weights, or download the model while online."
        )
    return _download(repo_id, filename, cache, revision, token)


def _download(repo_id: str, filename: str, cache: Path, revision: Optional[str], token: Optional[str]) -> Optional[Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=str(cache), revision=revision, token=token))
    except LocalEntryNotFoundError as err:  # no connection and not cached (it subclasses EntryNotFoundError)
        raise ModelNotFoundError(_unreachable(repo_id, filename, cache, err)) from err
    except EntryNotFoundError:
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelNotFoundError(f"{repo_id!r} (revision {revision or 'main'}) was not found on the hub: {err}") from err
    except OSError as err:  # connection errors subclass OSError in requests/httpx
        raise ModelNotFoundError(_unreachable(repo_id, filename, cache, err)) from err


def _unreachable(repo_id: str, filename: str, cache: Path, err: Exception) -> str:
    return (
        f"Could not reach the Hugging Face Hub to download {filename} of {repo_id!r}, and it is not a local folder "
        f"nor in the cache at {cache} ({type(err).__name__}: {err}). Check the network connection; or pass the "
        "path of a local folder holding config.json and the weights; or set HF_HUB_OFFLINE=1 to use only the "
        "cache and fail fast without network."
    )


def require_file(name_or_path, filename: str, **kwargs) -> Path:
    """Like resolve_file, but a missing file is an error that names it."""
    found = resolve_file(name_or_path, filename, **kwargs)
    if found is None:
        raise FileNotFoundError(f"{name_or_path!r} has no {filename}; it is needed here.")
    return found
