"""Checkpoint files <-> ``dict[str, numpy.ndarray]`` with PyTorch key names, no torch needed.

Reads safetensors (single and sharded), ``pytorch_model.bin`` (single and sharded, through a restricted
unpickler that never runs code from the file) and Transformers' legacy Flax msgpack (single and sharded);
writes safetensors the way Transformers does, atomically.
"""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text
from .errors import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError
from .flax_msgpack import flax_to_pytorch, load_flax_msgpack
from .loading import (
    FLAX_WEIGHTS_INDEX_NAME,
    FLAX_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHT_FILES,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    load_file,
    load_sharded,
    load_state_dict,
)
from .safetensors_io import load_safetensors
from .saving import save_state_dict
from .sizes import parse_size
from .torch_pickle import load_torch_bin

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnsafeCheckpointError",
    "load_state_dict",
    "save_state_dict",
    "load_file",
    "load_sharded",
    "load_safetensors",
    "load_torch_bin",
    "load_flax_msgpack",
    "flax_to_pytorch",
    "parse_size",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "WEIGHTS_INDEX_NAME",
    "FLAX_WEIGHTS_NAME",
    "FLAX_WEIGHTS_INDEX_NAME",
    "WEIGHT_FILES",
]
