"""Human sizes ("5GB", "200MB", "10KiB") to bytes, with Transformers' meaning of the units."""

from __future__ import annotations

import re

_UNITS = {
    "GIB": 2**30,
    "MIB": 2**20,
    "KIB": 2**10,
    "GB": 10**9,
    "MB": 10**6,
    "KB": 10**3,
    "B": 1,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*$")


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int (bytes) or a string such as ``"5GB"``, ``"200MB"``, ``"10KB"``, ``"1GiB"``.

    As in Transformers, KB/MB/GB are powers of ten, KiB/MiB/GiB powers of two, and a lower-case final ``b``
    ("5Gb") means bits (the byte count divided by 8). A bare number string is a byte count.
    """
    if isinstance(size, bool):
        raise TypeError(f"max_shard_size must be an int or a string like '5GB', got {size!r}")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    if not isinstance(size, str):
        raise TypeError(f"max_shard_size must be an int or a string like '5GB', got {type(size).__name__}")
    match = _SIZE_RE.match(size)
    unit = match.group(2).upper() if match else None
    if match is None or (unit and unit not in _UNITS):
        raise ValueError(
            f"max_shard_size {size!r} is not a size: use an integer number of bytes or a number followed by "
            "a unit, e.g. '5GB', '200MB', '10KB', '1GiB'."
        )
    number = float(match.group(1))
    result = int(number * _UNITS[unit or "B"])
    if match.group(2).endswith("b") and unit in ("GB", "MB", "KB"):
        result //= 8  # Transformers: '5Gb' is gigabits
    if result <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return result
