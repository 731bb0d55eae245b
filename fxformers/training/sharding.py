"""Device meshes and shardings for training: data parallel by default, FSDP-style as an option.

One code path for one CPU, one GPU, many devices on a host, or many hosts: the mesh has a single ``data`` axis over
every visible device (``jax.devices()``, all processes). Batches are split along their batch axis over it. Params
and optimizer state are replicated (data parallel) or, with ``fsdp=True``, each array is split along its largest
axis that divides by the device count (small arrays stay replicated). ``jit`` inserts the collectives, and the
update is the global-batch mean whatever the device count.

On several hosts call ``initialize_distributed()`` (``jax.distributed.initialize``) first; each process then
feeds its own slice of the global batch (``shard_batch`` builds the global array from the local pieces).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..distributed import initialize_distributed  # noqa: F401  (re-exported: it used to live here)

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
FSDP_MIN_SIZE = 2**14  # arrays smaller than this (biases, norms, scalars) stay replicated under FSDP


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Split the batch axis (after ``leading_axes`` unsplit axes, e.g. 1 for ``[A, B, ...]`` micro-batches)."""
    return NamedSharding(mesh, P(*([None] * leading_axes), DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], num_shards: int, min_size: int = FSDP_MIN_SIZE) -> P:
    """Split the largest axis that divides by ``num_shards``; replicate small or indivisible arrays."""
    if num_shards <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % num_shards == 0:
            spec: list = [None] * len(shape)
            spec[axis] = DATA_AXIS
            return P(*spec)
    return P()


def state_sharding(tree: Any, mesh: Mesh, fsdp: bool = False, min_size: int = FSDP_MIN_SIZE) -> Any:
    """A ``NamedSharding`` per leaf of ``tree`` (arrays or ShapeDtypeStructs): replicated, or FSDP-split."""
    size = mesh.devices.size

    def leaf(x: Any) -> NamedSharding:
        shape = getattr(x, "shape", ())
        return NamedSharding(mesh, fsdp_spec(shape, size, min_size) if fsdp else P())

    return jax.tree_util.tree_map(leaf, tree)


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
    """Host numpy arrays -> global jax arrays laid out by ``sharding``.

    On one process the arrays are the whole global batch. On several, each process passes its own slice (the
    global batch is the slices in process order), as ``Trainer`` does.
    """
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def put_global(tree: Any, sharding: Any) -> Any:
    """Host values that every process holds in full (the same on each) -> global jax arrays laid out by
    ``sharding`` (one sharding, or a tree of them), each process giving only the pieces its own devices hold.

    This is how the Trainer feeds a batch: every process collates the whole global batch (so all agree on its
    padded shape), and each one uploads just its rows, whatever the mesh layout.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x: Any, s: Any) -> jax.Array:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global (a model on a mesh)
            return jax.device_put(x, s)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda index: x[index])

    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree_util.tree_map(lambda x: put(x, sharding), tree)
    return jax.tree_util.tree_map(put, tree, sharding)


def check_divisible(global_batch: int, mesh: Mesh, what: str = "batch") -> None:
    size = mesh.devices.size
    if global_batch % size:
        raise ValueError(f"The global {what} size {global_batch} does not divide over {size} devices; "
                         "use a per-device batch size (global = per device x devices).")
