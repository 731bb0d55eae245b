"""Training on the device mesh: the train state laid out by the model's partition rules, batches over the batch axes.

The mesh and the rules live at the core (``fxformers.sharding``); this module adds what only training needs. The
parameters of the ``TrainState`` take the shardings the partition rules give them; every optimizer-state array
that mirrors a parameter (Adam's moments) takes that parameter's sharding; scalars and everything else are
replicated. ``jit`` inserts the collectives, and the update is the global-batch mean whatever the layout.

On several hosts call ``initialize_distributed()`` (``jax.distributed.initialize``) first; each process then
feeds its own slice of the global batch (``shard_batch`` builds the global array from the local pieces).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..convert import flatten
from ..distributed import initialize_distributed  # noqa: F401  (re-exported: it used to live here)
from ..sharding import FSDP, batch_sharding, batch_shards, create_mesh, replicated  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

FSDP_MIN_SIZE = 2**14  # with fsdp_config={"min_num_params": n}: arrays smaller than n are not split over fsdp


def train_state_shardings(state: Any, params_sharding: Mapping[str, NamedSharding], mesh: Mesh,
                          fsdp_min_size: int = 0) -> Any:
    """A ``NamedSharding`` per leaf of ``state`` (a TrainState of arrays or ShapeDtypeStructs).

    ``params_sharding`` is {flat param path: sharding}. A leaf whose path ends in a param path with that param's
    shape (the param itself, Adam's ``mu``/``nu`` for it) takes its sharding; anything else is replicated. With
    ``fsdp_min_size``, arrays smaller than that many elements are not split over ``fsdp``.
    """
    def leaf(path, x):
        keys = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
        sharding = params_sharding.get("/".join(keys))
        shape = tuple(getattr(x, "shape", ()))
        if sharding is None or not keys:
            return replicated(mesh)
        if fsdp_min_size and int(np.prod(shape, dtype=np.int64)) < fsdp_min_size:
            sharding = NamedSharding(mesh, _without_axis(sharding.spec, FSDP))
        return sharding

    return jax.tree_util.tree_map_with_path(leaf, state)


def _without_axis(spec: P, axis: str) -> P:
    out = []
    for entry in spec:
        if isinstance(entry, tuple):
            kept = tuple(a for a in entry if a != axis)
            out.append(kept if len(kept) > 1 else (kept[0] if kept else None))
        else:
            out.append(None if entry == axis else entry)
    return P(*out)


def flat_param_shardings(model: Any, params: Any, mesh: Mesh) -> dict[str, NamedSharding]:
    """{flat param path: sharding} of ``params`` (arrays or shapes) on ``mesh`` by ``model``'s partition rules."""
    from ..sharding import param_shardings

    rules = model.resolved_partition_rules()
    return flatten(param_shardings(rules, params, mesh, what=type(model).__name__))


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
    size = batch_shards(mesh)
    if global_batch % size:
        raise ValueError(f"The global {what} size {global_batch} does not divide over the mesh's {size} batch shards "
                         "(data x fsdp); use a per-device batch size (global = per device x batch shards).")


def mesh_for_training(model: Any, fsdp: Any = False, tensor_parallel_size: int = 1) -> Mesh:
    """The model's own mesh when it was loaded onto one, else one over every device: ``fsdp`` splits params over
    all the devices that tensor parallelism leaves, otherwise they are data parallel."""
    if model.mesh is not None:
        tp = model.mesh.shape.get("model", 1)
        if tensor_parallel_size not in (1, tp):
            raise ValueError(f"tensor_parallel_size={tensor_parallel_size}, but the model lives on a mesh with "
                             f"model={tp}; load the model on the mesh you want, or leave tensor_parallel_size at 1.")
        return model.mesh
    if fsdp:
        return create_mesh(data=1, fsdp=-1, model=tensor_parallel_size)
    return create_mesh(data=-1, model=tensor_parallel_size)
