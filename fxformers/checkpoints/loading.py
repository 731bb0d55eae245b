"""``load_state_dict``: find a model's weight files (any of Transformers' formats) and read them into numpy."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

import numpy as np

from ..hub import resolve_file
from .errors import CheckpointError, CheckpointNotFoundError
from .lazy import LazyStateDict
from .safetensors_io import lazy_safetensors, load_safetensors
from .torch_pickle import load_torch_bin

logger = logging.getLogger(__name__)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
FLAX_WEIGHTS_NAME = "flax_model.msgpack"
FLAX_WEIGHTS_INDEX_NAME = "flax_model.msgpack.index.json"

#: Transformers' search order.
WEIGHT_FILES = (
    SAFE_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    FLAX_WEIGHTS_NAME,
    FLAX_WEIGHTS_INDEX_NAME,
)
_FLAX_FILES = (FLAX_WEIGHTS_NAME, FLAX_WEIGHTS_INDEX_NAME)

StateDict = dict[str, np.ndarray]


def read_index(index_path: str | os.PathLike) -> dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file name) of a sharded checkpoint's index, validated."""
    index_path = Path(index_path)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{index_path} is not a valid sharded-checkpoint index ({err}); download or save it again."
        ) from err
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointError(
            f"{index_path} is not a valid sharded-checkpoint index: it needs a 'weight_map' object mapping "
            "tensor names to shard file names."
        )
    for shard in set(weight_map.values()):
        parts = PurePosixPath(shard).parts
        if not parts or shard.startswith(("/", "\\")) or ".." in parts or "\\" in shard or ":" in shard:
            raise CheckpointError(f"{index_path} names the shard {shard!r}, which is not a file inside the model.")
    return weight_map


def resolve_shard(
    index_path: Path, shard: str, resolve: Optional[Callable[[str], Optional[Path]]] = None
) -> Path:
    """The local path of ``shard``, named by ``index_path``; a clear error when it is missing."""
    found = resolve(shard) if resolve is not None else None
    if found is None:
        candidate = index_path.parent / shard
        found = candidate if candidate.is_file() else None
    if found is None:
        raise CheckpointNotFoundError(
            f"{index_path} names the shard {shard!r}, which is missing from {index_path.parent}. The download "
            "or copy of this checkpoint is incomplete: fetch the missing shard or the whole checkpoint again."
        )
    return Path(found)


def load_sharded(
    index_path: str | os.PathLike, resolve: Optional[Callable[[str], Optional[Path]]] = None
) -> StateDict:
    """A sharded safetensors, PyTorch or Flax checkpoint, from its ``*.index.json`` file.

    ``resolve(shard_name)`` locates a shard (default: next to the index).
    """
    index_path = Path(index_path)
    if index_path.name.endswith(".msgpack.index.json"):
        from .flax_msgpack import load_flax_sharded

        return load_flax_sharded(index_path, resolve)
    weight_map = read_index(index_path)
    state: StateDict = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = resolve_shard(index_path, shard, resolve)
        state.update(load_file(shard_path))
    missing = [key for key in weight_map if key not in state]
    if missing:
        raise CheckpointError(
            f"{index_path} lists {len(missing)} tensors that its shards do not hold, e.g. {missing[:5]}; the "
            "shards and the index do not belong together: download or save the checkpoint again."
        )
    return state


def load_file(path: str | os.PathLike) -> StateDict:
    """One weight file, its format chosen by name: ``*.safetensors``, ``*.msgpack``, ``*.index.json`` (sharded),
    anything else a ``torch.save`` file."""
    path = Path(path)
    name = path.name
    if name.endswith(".index.json"):
        return load_sharded(path)
    if name.endswith(".safetensors"):
        return load_safetensors(path)
    if name.endswith(".msgpack"):
        from .flax_msgpack import load_flax_msgpack

        return load_flax_msgpack(path)
    return load_torch_bin(path)


def find_weights(
    name_or_path: str | os.PathLike,
    *,
    from_flax: Optional[bool] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    local_files_only: bool = False,
) -> tuple[Path, Optional[Callable[[str], Optional[Path]]]]:
    """The weight file (or sharded index) of a model, and how to resolve its shards (None for a single file).

    Files are tried in Transformers' order (``WEIGHT_FILES``); ``from_flax=True`` tries the Flax files first.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, None
    order = WEIGHT_FILES
    if from_flax:
        order = _FLAX_FILES + tuple(n for n in WEIGHT_FILES if n not in _FLAX_FILES)
    kwargs = dict(cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only)
    for filename in order:
        found = resolve_file(name_or_path, filename, **kwargs)
        if found is None:
            continue
        logger.info("loading weights from %s", found)
        return Path(found), lambda shard: resolve_file(name_or_path, shard, **kwargs)
    where = f"the folder {path}" if path.is_dir() else f"the model {str(name_or_path)!r} (revision {revision or 'main'})"
    raise CheckpointNotFoundError(
        f"No weights found in {where}: looked for {', '.join(order)}. Pass the folder that holds the weights, "
        "or save/download them there."
    )


def load_state_dict(
    name_or_path: str | os.PathLike,
    *,
    from_pt: Optional[bool] = None,
    from_flax: Optional[bool] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    local_files_only: bool = False,
) -> tuple[StateDict, str]:
    """The weights of a model as ``{pytorch_key: numpy array}`` (stored dtype, bfloat16 as ``ml_dtypes``), and
    the file they came from.

    ``name_or_path`` is a local folder, a hub id (cache, then download unless offline), or a weight file.
    Files are tried in Transformers' order: model.safetensors, model.safetensors.index.json,
    pytorch_model.bin, pytorch_model.bin.index.json, flax_model.msgpack, flax_model.msgpack.index.json;
    ``from_flax=True`` tries the Flax files first. ``from_pt`` is accepted for familiarity (PyTorch-format
    files are always read). Flax checkpoints are renamed to PyTorch keys (see ``flax_msgpack``).

    Raises CheckpointNotFoundError when none of the files exists (or an index names a missing shard),
    UnsafeCheckpointError for a pickle that would run code, CheckpointError for a corrupt file, and
    hub.ModelNotFoundError when the model itself cannot be found.
    """
    del from_pt  # PyTorch files are the default format; the flag only exists for familiarity
    found, resolve = find_weights(
        name_or_path, from_flax=from_flax, cache_dir=cache_dir, revision=revision, token=token,
        local_files_only=local_files_only,
    )
    if found.name.endswith(".index.json") and resolve is not None:
        return load_sharded(found, resolve), str(found)
    return load_file(found), str(found)


def open_state_dict(name_or_path: str | os.PathLike, **kwargs) -> LazyStateDict:
    """Like ``load_state_dict`` (same arguments), but nothing is read until the tensors are taken one by one:
    safetensors tensors are read individually, the shards of a sharded checkpoint one after another, and formats
    that can only be read whole (``.bin``, msgpack) one file at a time. ``.source`` names the file."""
    kwargs.pop("from_pt", None)
    found, resolve = find_weights(name_or_path, **kwargs)
    if found.name.endswith(".msgpack.index.json"):
        state = load_sharded(found, resolve)  # Flax shards are renamed as a whole
    elif found.name.endswith(".index.json"):
        return _open_sharded(found, resolve)
    elif found.name.endswith(".safetensors"):
        tensors = lazy_safetensors(found)
        return LazyStateDict(tensors, [lambda: dict(tensors)], str(found))
    else:
        state = load_file(found)  # read whole: the consumer takes (and frees) one tensor at a time
    return LazyStateDict(list(state), [lambda: state], str(found))


def _open_sharded(index_path: Path, resolve: Optional[Callable[[str], Optional[Path]]]) -> LazyStateDict:
    weight_map = read_index(index_path)
    shards = [resolve_shard(index_path, shard, resolve) for shard in dict.fromkeys(weight_map.values())]
    parts = []
    for shard_path in shards:
        if shard_path.name.endswith(".safetensors"):
            tensors = lazy_safetensors(shard_path)  # the header now (validated, cheap), the data when taken
            missing = [key for key, name in weight_map.items() if name == shard_path.name and key not in tensors]
            if missing:
                raise CheckpointError(
                    f"{index_path} lists {len(missing)} tensors that {shard_path.name} does not hold, e.g. "
                    f"{missing[:5]}; the shards and the index do not belong together: download or save the "
                    "checkpoint again."
                )
            parts.append(lambda tensors=tensors: dict(tensors))
        else:
            parts.append(lambda shard_path=shard_path: load_file(shard_path))
    return LazyStateDict(weight_map, parts, str(index_path))
