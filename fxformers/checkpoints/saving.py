"""``save_state_dict``: write a state dict as Transformers does (``model.safetensors``, sharded past a size),
atomically: every file goes to a temporary name first, and the previous checkpoint stays loadable if the
save fails or the process dies."""

from __future__ import annotations

import json
import logging
import os
import re
import types
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from .atomic import (
    abort_staged,
    commit_staged,
    folder_lock,
    fsync_dir,
    fsync_path,
    remove_quietly,
    remove_stale_temporaries,
    stage_texts,
    temporary_path,
)
from .lazy import LazyTensor
from .loading import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME
from .safetensors_io import write_safetensors
from .sizes import parse_size

logger = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_DEFAULT_METADATA = types.MappingProxyType({"format": "pt"})


def shard_name(index: int, count: int) -> str:
    """Transformers' shard file name, e.g. ``model-00001-of-00003.safetensors`` (index counts from 1)."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"


def split_into_shards(state_dict: Mapping[str, np.ndarray], max_shard_size: int) -> list[dict[str, np.ndarray]]:
    """Greedy split in key order, as huggingface_hub does: a tensor larger than the limit gets its own shard,
    otherwise a new shard starts when the next tensor would not fit."""
    shards: list[dict[str, np.ndarray]] = []
    current: dict[str, np.ndarray] = {}
    current_size = 0
    for key, tensor in state_dict.items():
        size = tensor.nbytes  # numpy, jax and LazyTensor all know their size without materializing
        if size > max_shard_size:
            shards.append({key: tensor})
            continue
        if current and current_size + size > max_shard_size:
            shards.append(current)
            current, current_size = {}, 0
        current[key] = tensor
        current_size += size
    if current or not shards:
        shards.append(current)
    return shards


def save_state_dict(
    state_dict: Mapping[str, np.ndarray],
    folder: str | os.PathLike,
    *,
    max_shard_size: int | str = "5GB",
    metadata: Mapping[str, str] = _DEFAULT_METADATA,
) -> list[Path]:
    """Write ``state_dict`` (PyTorch key -> array; numpy or jax arrays, or ``LazyTensor``s that are produced one at a
    time while writing) into ``folder`` as
    ``model.safetensors``, or, when larger than ``max_shard_size`` (bytes, or "5GB", "200MB", "10KB", "1GiB"
    with Transformers' units), as ``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json``.

    Atomic: all files are written under temporary names in ``folder`` and flushed, then renamed into place
    (shards first, the index or single file last), then shards and index of an earlier save that the new
    checkpoint does not use are removed. If writing fails or the process dies, the previous checkpoint is
    untouched; temporary files a killed save left are removed by the next save. Concurrent saves into one
    folder take turns (``folder_lock``). Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    limit = parse_size(max_shard_size)
    arrays = _as_arrays(state_dict)
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata is not None else None
    files, index_text = _layout(arrays, limit)
    with folder_lock(folder):
        return _write_and_commit(folder, files, index_text, meta, len(arrays), {})


def save_model_files(
    state_dict: Mapping[str, Any],
    folder: str | os.PathLike,
    texts: Mapping[str, str],
    *,
    max_shard_size: int | str = "5GB",
) -> list[Path]:
    """``save_state_dict`` plus small text files (``{"config.json": text, ...}``) as one save: every file is
    written in full under a temporary name before any is renamed into place (weights first, the texts last, in
    their order), so a full disk part-way leaves the previous model (weights and config) as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    limit = parse_size(max_shard_size)
    arrays = _as_arrays(state_dict)
    files, index_text = _layout(arrays, limit)
    with folder_lock(folder):
        return _write_and_commit(folder, files, index_text, dict(_DEFAULT_METADATA), len(arrays), dict(texts))


def _as_arrays(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    arrays: dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state dict keys must be strings, got {key!r}")
        array = value if isinstance(value, (LazyTensor, jax.Array, np.ndarray)) else np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not an array")
        arrays[key] = array
    return arrays


def _layout(arrays: dict[str, np.ndarray], limit: int) -> tuple[dict[str, dict], str | None]:
    """{file name: its tensors}, and the index text when sharded."""
    shards = split_into_shards(arrays, limit)
    if len(shards) == 1:
        return {SAFE_WEIGHTS_NAME: shards[0]}, None
    files = {shard_name(i + 1, len(shards)): shard for i, shard in enumerate(shards)}
    index = {
        "metadata": {"total_size": sum(a.nbytes for a in arrays.values())},
        "weight_map": {key: name for name, shard in files.items() for key in shard},
    }
    return files, json.dumps(index, indent=2, sort_keys=True) + "\n"


def is_weight_file(name: str) -> bool:
    """A file name that ``save_state_dict`` writes (or replaces) in a model folder."""
    return name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) or bool(_SHARD_RE.match(name))


def _write_and_commit(folder: Path, files: dict, index_text: str | None, meta, n_tensors: int,
                      texts: dict[str, str]) -> list[Path]:
    remove_stale_temporaries(folder, lambda name: is_weight_file(name) or name in texts)  # left by killed saves
    temporaries: dict[str, Path] = {}
    staged: dict[Path, Path] = {}
    try:
        for name, shard in files.items():
            temporaries[name] = temporary_path(folder / name)
            write_safetensors(shard, temporaries[name], meta)
            fsync_path(temporaries[name])
        if index_text is not None:
            temporaries[SAFE_WEIGHTS_INDEX_NAME] = temporary_path(folder / SAFE_WEIGHTS_INDEX_NAME)
            temporaries[SAFE_WEIGHTS_INDEX_NAME].write_text(index_text, encoding="utf-8")
            fsync_path(temporaries[SAFE_WEIGHTS_INDEX_NAME])
        staged = stage_texts({folder / name: text for name, text in texts.items()})
    except BaseException:
        for tmp in temporaries.values():
            remove_quietly(tmp)
        abort_staged(staged)
        raise

    # Commit. The loader prefers model.safetensors over the index, so: a new single file is current as soon as
    # it is renamed; a new sharded checkpoint becomes current when its index is renamed and an old
    # model.safetensors (which would still win) is removed.
    for name, tmp in temporaries.items():  # shards first, the index last (dict order)
        os.replace(tmp, folder / name)
    fsync_dir(folder)
    stale = []
    if index_text is None:
        stale.append(folder / SAFE_WEIGHTS_INDEX_NAME)
    else:
        stale.append(folder / SAFE_WEIGHTS_NAME)
    stale += [p for p in folder.iterdir() if _SHARD_RE.match(p.name) and p.name not in files]
    for path in stale:
        remove_quietly(path)
    if stale:
        fsync_dir(folder)
    commit_staged(staged)  # config.json and friends last
    written = [folder / name for name in [*temporaries, *texts]]
    logger.info("saved %d tensors to %s", n_tensors, ", ".join(p.name for p in written))
    return written
