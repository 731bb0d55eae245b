"""safetensors files <-> ``dict[str, numpy.ndarray]``.

Reading parses the format directly (8-byte little-endian header length, JSON header, raw little-endian data)
because the safetensors package's numpy API (0.8) cannot return bfloat16 ("data type 'bfloat16' not
understood"); every header field is validated so a truncated or corrupt file is a ``CheckpointError`` naming
it. Writing goes through ``safetensors.numpy.save_file``, which handles ``ml_dtypes.bfloat16`` by dtype name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping, Optional

import ml_dtypes
import numpy as np

from .errors import CheckpointError

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


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


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
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise _corrupt(path, f"header is not valid JSON: {str(err)[:200]}") from err
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_start = 8 + n
    validate_safetensors_header(header, size - data_start, path)
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata, data_start


def validate_safetensors_header(header: dict, data_size: int, path: str | os.PathLike) -> None:
    """Check a parsed safetensors header as the safetensors library does: every entry a known dtype, a shape of
    non-negative ints and the byte range that shape needs; the ranges tile the data section exactly (no gap, no
    overlap, nothing after the last); ``__metadata__`` maps strings to strings. Any reader calls this."""
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise _corrupt(path, "__metadata__ is not an object of strings")
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _corrupt(path, f"entry {name[:100]!r} is not an object")
        dtype_name = entry.get("dtype")
        dtype = SAFETENSORS_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
        if dtype is None:
            raise _corrupt(path, f"tensor {name[:100]!r} has unsupported dtype {str(dtype_name)[:40]!r}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and len(shape) <= 64 and all(type(d) is int and d >= 0 for d in shape)):
            raise _corrupt(path, f"tensor {name[:100]!r} has invalid shape {str(shape)[:100]}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise _corrupt(
                path, f"tensor {name[:100]!r} has data offsets {str(offsets)[:100]} outside the {data_size}-byte data"
            )
        if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
            raise _corrupt(path, f"tensor {name[:100]!r} of shape {shape} {dtype_name} does not match its byte range")
        ranges.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(ranges):
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else f"leaves a gap of {begin - end} bytes before it"
            raise _corrupt(path, f"the data of tensor {name[:100]!r} {what}")
        end = stop
    if end != data_size:
        raise _corrupt(path, f"{data_size - end} bytes after the last tensor's data belong to no tensor")


def load_safetensors(path: str | os.PathLike, keys: Optional[set[str]] = None) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file (or only ``keys``) as writable numpy arrays in the stored dtype."""
    path = Path(path)
    header, _, data_start = read_safetensors_header(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:
            for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                if keys is not None and name not in keys:
                    continue
                arr = np.empty(entry["shape"], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
                begin, end = entry["data_offsets"]
                f.seek(data_start + begin)
                if end > begin:
                    got = f.readinto(memoryview(arr.reshape(-1).view(np.uint8)))
                    if got != end - begin:
                        raise _corrupt(path, f"tensor {name!r} is cut short")
                if arr.dtype.byteorder == ">":  # big-endian host: data on disk is little-endian
                    arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
                out[name] = arr
    except OSError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {err}") from err
    return out


def write_safetensors(
    tensors: Mapping[str, np.ndarray], path: str | os.PathLike, metadata: Optional[Mapping[str, str]] = None
) -> None:
    """Write ``tensors`` to ``path`` (not atomically; the saver writes to a temporary name and renames)."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    save_file(arrays, os.fspath(path), metadata=dict(metadata) if metadata is not None else None)
