"""Transformers' legacy Flax checkpoints (``flax_model.msgpack``, single or sharded) -> PyTorch-named state dict.

The file is ``flax.serialization.to_bytes(params)``: a msgpack of the nested params dict. The names are mapped
to PyTorch's generically, exactly as Transformers 4's ``load_flax_weights_in_pytorch_model`` did without a
PyTorch model at hand:

* a top-level ``batch_stats`` collection means the tree is ``{"params": ..., "batch_stats": ...}``: the
  collection name is dropped;
* ``kernel`` -> ``weight``: a 4-D (conv) kernel ``[H, W, in, out]`` is permuted to ``[out, in, H, W]``, any
  other kernel is reversed (``.T``: a dense ``[in, out]`` -> ``[out, in]``, a 1-D conv ``[W, in, out]`` ->
  ``[out, in, W]``);
* ``scale`` and ``embedding`` -> ``weight``; a name containing ``mean`` -> ``running_mean``, ``var`` ->
  ``running_var`` (batch norm statistics);
* the path is joined with ``.``; Transformers' Flax modules were named ``"0"``, ``"1"`` ... for layer lists,
  so ``encoder/layer/0/...`` becomes ``encoder.layer.0...``. Like Transformers, no other renaming (such as
  ``layers_0`` -> ``layers.0``) is done.

bfloat16 stays bfloat16 (Transformers cast it to float32 because torch.from_numpy could not take it).
Adding or removing the base-model prefix is the model converter's job, not this reader's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .errors import CheckpointError


def _corrupt(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid Flax msgpack checkpoint ({type(err).__name__}: {err}). The file is probably "
        "truncated or corrupt: delete it and download or save it again."
    )


def _allowed_dtypes() -> frozenset:
    from .safetensors_io import SAFETENSORS_DTYPES

    return frozenset(SAFETENSORS_DTYPES.values()) | {np.dtype(np.complex128)}


def _flatten(tree: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], np.ndarray], path: Path) -> None:
    """Flatten the params tree; every leaf must be a numeric array (or a Python number): strings, bytes, None,
    lists and unknown msgpack extension types are refused, not turned into arrays."""
    if isinstance(tree, Mapping):
        if len(prefix) >= _MAX_NESTING:
            raise CheckpointError(f"{path}: the params tree nests more than {_MAX_NESTING} levels deep")
        for key, value in tree.items():
            _flatten(value, prefix + (str(key)[:1000],), out, path)
        return
    where = "/".join(prefix)[:300] or "the root"
    if isinstance(tree, (bool, int, float, complex)) and not (isinstance(tree, int) and abs(tree) >= 2**63):
        array = np.asarray(tree)
    elif isinstance(tree, (np.ndarray, np.generic)):
        array = np.asarray(tree)
    else:
        kind = f"msgpack extension type {tree.code}" if hasattr(tree, "code") and hasattr(tree, "data") else (
            f"a {type(tree).__name__}"
        )
        raise CheckpointError(f"{path}: entry {where} is {kind}, not an array; the file is not a Flax checkpoint.")
    if array.dtype not in _allowed_dtypes():
        raise CheckpointError(f"{path}: entry {where} is an array of {array.dtype}, not numbers.")
    out[prefix] = array


_MAX_NESTING = 100


def read_flax_msgpack(path: str | os.PathLike) -> dict[tuple[str, ...], np.ndarray]:
    """The flattened Flax params of one msgpack file: ``{("encoder", "layer", "0", ..., "kernel"): array}``."""
    from flax.serialization import msgpack_restore  # imports jax: only when a Flax file is actually read

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    try:
        tree = msgpack_restore(data)
    except RecursionError as err:
        raise _corrupt(path, RecursionError("the data nests too deeply")) from err
    except Exception as err:  # msgpack raises its own ExtraData/FormatError/ValueError/TypeError...
        raise _corrupt(path, err) from err
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{path} holds a {type(tree).__name__}, not a Flax params tree (a nested dict).")
    flat: dict[tuple[str, ...], np.ndarray] = {}
    _flatten(tree, (), flat, path)
    return flat


def flax_to_pytorch(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict[str, np.ndarray]:
    """Rename a flattened Flax params tree to PyTorch keys (the generic rule of Transformers 4)."""
    has_batch_stats = any(key[:1] == ("batch_stats",) for key in flat)
    state: dict[str, np.ndarray] = {}
    for key, tensor in flat.items():
        key = tuple(key)
        last = key[-1]
        if last == "kernel" and tensor.ndim == 4:  # conv [H, W, in, out] -> [out, in, H, W]
            key, tensor = key[:-1] + ("weight",), np.ascontiguousarray(np.transpose(tensor, (3, 2, 0, 1)))
        elif last == "kernel":  # dense [in, out] -> [out, in]; 1-D conv [W, in, out] -> [out, in, W]
            key, tensor = key[:-1] + ("weight",), np.ascontiguousarray(tensor.T)
        elif last in ("scale", "embedding"):
            key = key[:-1] + ("weight",)
        elif "mean" in last:
            key = key[:-1] + ("running_mean",)
        elif "var" in last:
            key = key[:-1] + ("running_var",)
        if not tensor.flags.writeable:  # msgpack_restore returns read-only views of the file's bytes
            tensor = tensor.copy()
        if has_batch_stats:
            key = key[1:]  # drop the "params" / "batch_stats" collection name
        name = ".".join(key)
        if name in state:
            raise CheckpointError(f"two Flax parameters map to the same PyTorch key {name!r}")
        state[name] = tensor
    return state


def load_flax_msgpack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A Transformers ``flax_model.msgpack`` file as a PyTorch-named state dict."""
    return flax_to_pytorch(read_flax_msgpack(path))


def load_flax_sharded(
    index_path: str | os.PathLike, resolve: Optional[Callable[[str], Optional[Path]]] = None
) -> dict[str, np.ndarray]:
    """A sharded Flax checkpoint (``flax_model.msgpack.index.json`` + shards) as a PyTorch-named state dict.

    ``resolve(shard_name)`` locates a shard (default: next to the index). Index keys are '/'-joined paths.
    """
    from .loading import read_index, resolve_shard

    index_path = Path(index_path)
    weight_map = read_index(index_path)
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = resolve_shard(index_path, shard, resolve)
        flat.update(read_flax_msgpack(shard_path))
    found = {"/".join(key) for key in flat}
    missing = [key for key in weight_map if key not in found]
    if missing:
        raise CheckpointError(
            f"{index_path} lists {len(missing)} parameters that its shards do not hold, e.g. {missing[:5]}; "
            "the shards and the index do not belong together: download or save the checkpoint again."
        )
    return flax_to_pytorch(flat)
