"""safetensors files <-> ``dict[str, numpy.ndarray]``.

Reading parses the format directly (8-byte little-endian header length, JSON header, raw little-endian data)
because the safetensors package's numpy API (0.8) cannot return bfloat16 ("data type 'bfloat16' not
understood"); every header field is validated so a truncated or corrupt file is a ``CheckpointError`` naming
it. Writing streams one tensor at a time in the safetensors library's own layout (``write_safetensors``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import ml_dtypes
import numpy as np

from .errors import CheckpointError
from .lazy import LazyTensor, materialize

# safetensors dtype string -> numpy dtype
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
    "C64": np.dtype(np.complex64),
}

_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def _corrupt(path: os.PathLike | str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid safetensors file ({what}). The file is probably truncated or corrupt "
        "(an interrupted download or copy): delete it and download or save it again."
    )


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, dict, int]:
    """(tensor entries, ``__metadata__``, byte offset of the data section) of a safetensors file, validated."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"only {size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER or 8 + n > size:
                raise _corrupt(path, f"header length {n} does not fit in the file's {size} bytes")
            raw = f.read(n)
    except OSError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {err}") from err
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(path, f"header is not JSON: {err}") from err
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _corrupt(path, "__metadata__ is not an object")
    data_start = 8 + n
    data_size = size - data_start
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise _corrupt(path, f"entry {name!r} is not an object")
        dtype = SAFETENSORS_DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise _corrupt(path, f"tensor {name!r} has unsupported dtype {entry.get('dtype')!r}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise _corrupt(path, f"tensor {name!r} has invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise _corrupt(path, f"tensor {name!r} has data offsets {offsets!r} outside the {data_size}-byte data")
        if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
            raise _corrupt(path, f"tensor {name!r} of shape {shape} {entry['dtype']} does not match its byte range")
    return header, metadata, data_start


def _read_tensor(f, path: Path, name: str, entry: dict, data_start: int) -> np.ndarray:
    """One tensor of an open safetensors file (its header entry validated by ``read_safetensors_header``)."""
    arr = np.empty(entry["shape"], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
    begin, end = entry["data_offsets"]
    f.seek(data_start + begin)
    if end > begin:
        got = f.readinto(memoryview(arr.reshape(-1).view(np.uint8)))
        if got != end - begin:
            raise _corrupt(path, f"tensor {name!r} is cut short")
    if arr.dtype.byteorder == ">":  # big-endian host: data on disk is little-endian
        arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
    return arr


def load_safetensors(path: str | os.PathLike, keys: Optional[set[str]] = None) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file (or only ``keys``) as writable numpy arrays in the stored dtype."""
    path = Path(path)
    header, _, data_start = read_safetensors_header(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:
            for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                if keys is None or name in keys:
                    out[name] = _read_tensor(f, path, name, entry, data_start)
    except OSError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {err}") from err
    return out


def lazy_safetensors(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """The tensors of a safetensors file as ``LazyTensor``s, in file order: each reads only its own bytes."""
    path = Path(path)
    header, _, data_start = read_safetensors_header(path)

    def reader(name: str, entry: dict):
        def load() -> np.ndarray:
            try:
                with open(path, "rb") as f:
                    return _read_tensor(f, path, name, entry, data_start)
            except OSError as err:
                if isinstance(err, CheckpointError):
                    raise
                raise CheckpointError(f"cannot read {path}: {err}") from err
        return load

    ordered = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return {
        name: LazyTensor(tuple(entry["shape"]), SAFETENSORS_DTYPES[entry["dtype"]], reader(name, entry))
        for name, entry in ordered
    }


_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def write_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Optional[Mapping[str, str]] = None
) -> None:
    """Write ``tensors`` (numpy/jax arrays or ``LazyTensor``s) to ``path``, streaming: the header is built from
    shapes and dtypes, then each tensor is materialized, written and dropped in turn, so at most one tensor is
    in memory at a time. Not atomic: the saver writes to a temporary name and renames.

    The layout is the safetensors library's: entries sorted by (dtype alignment descending, name), the header
    padded with spaces to a multiple of 8 bytes.
    """
    entries = {}
    for name, value in tensors.items():
        dtype = np.dtype(value.dtype)
        if dtype not in _DTYPE_NAMES:
            raise TypeError(f"cannot write tensor {name!r} of dtype {dtype} to safetensors")
        entries[name] = (tuple(int(d) for d in value.shape), dtype, value)
    order = sorted(entries, key=lambda n: (-entries[n][1].alignment, n))
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name in order:
        shape, dtype, _ = entries[name]
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in order:
            shape, dtype, value = entries[name]
            array = np.ascontiguousarray(materialize(value))
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"tensor {name!r} materialized as {array.dtype}{array.shape}, declared {dtype}{shape}")
            if array.dtype.byteorder == ">":
                array = array.byteswap().view(array.dtype.newbyteorder("<"))
            f.write(memoryview(array.reshape(-1).view(np.uint8)))
            del array
