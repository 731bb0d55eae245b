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

from .atomic import fsync_dir, fsync_path, remove_quietly, temporary_path
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
    untouched. Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    limit = parse_size(max_shard_size)
    arrays: dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state dict keys must be strings, got {key!r}")
        array = value if isinstance(value, (LazyTensor, jax.Array, np.ndarray)) else np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not an array")
        arrays[key] = array
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata is not None else None

    shards = split_into_shards(arrays, limit)
    if len(shards) == 1:
        files = {SAFE_WEIGHTS_NAME: shards[0]}
        index_text = None
    else:
        files = {shard_name(i + 1, len(shards)): shard for i, shard in enumerate(shards)}
        index = {
            "metadata": {"total_size": sum(a.nbytes for a in arrays.values())},
            "weight_map": {key: name for name, shard in files.items() for key in shard},
        }
        index_text = json.dumps(index, indent=2, sort_keys=True) + "\n"

    temporaries: dict[str, Path] = {}
    try:
        for name, shard in files.items():
            temporaries[name] = temporary_path(folder / name)
            write_safetensors(shard, temporaries[name], meta)
            fsync_path(temporaries[name])
        if index_text is not None:
            temporaries[SAFE_WEIGHTS_INDEX_NAME] = temporary_path(folder / SAFE_WEIGHTS_INDEX_NAME)
            temporaries[SAFE_WEIGHTS_INDEX_NAME].write_text(index_text, encoding="utf-8")
            fsync_path(temporaries[SAFE_WEIGHTS_INDEX_NAME])
    except BaseException:
        for tmp in temporaries.values():
            remove_quietly(tmp)
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
    written = [folder / name for name in temporaries]
    logger.info("saved %d tensors to %s", len(arrays), ", ".join(p.name for p in written))
    return written
