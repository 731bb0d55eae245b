"""The device mesh and partition rules: where every parameter, batch and cache lives.

One named mesh with axes ``("data", "fsdp", "model")`` serves loading, inference, generation and training:

- ``data``: batch-parallel (parameters replicated over it);
- ``fsdp``: batch-parallel too, but each large parameter (and its optimizer state) is split over it;
- ``model``: tensor parallelism, Megatron-style (column-parallel in-projections, row-parallel out-projections,
  vocabulary-parallel embeddings and heads).

Each architecture ships **partition rules** beside its conversion table: an ordered list of
``(regex over the flax param path, PartitionSpec)``. The path is the flat ``/``-joined param path (for example
``model/layers_0/self_attn/q_proj/kernel``); ``re.search`` is used and the first matching rule wins. Specs name the
mesh axes ``"fsdp"`` and ``"model"`` (never ``"data"``), ``None`` for an unsplit dimension. A dimension that the
mesh axis does not divide is left unsplit (GSPMD needs even shards), so the same rules serve every mesh.
A rule that matches no parameter of a family, or a parameter that no rule covers, is an error (``check_rules``).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

logger = logging.getLogger(__name__)

DATA, FSDP, MODEL = "data", "fsdp", "model"
MESH_AXES = (DATA, FSDP, MODEL)
#: The axes a batch is split over: both batch-parallel axes.
BATCH_AXES = (DATA, FSDP)

PartitionRules = Sequence[tuple[str, P]]

# The specs most rules use. Kernels are flax Dense kernels [in, out]; embeddings are [V, D].
COLUMN = P(FSDP, MODEL)  # in-projections (q/k/v, gate/up, fc-in, heads): output features over `model`
COLUMN_BIAS = P(MODEL)  # the bias of a column-parallel kernel
ROW = P(MODEL, FSDP)  # out-projections (o, down, fc-out): input features over `model`
VOCAB = P(MODEL, FSDP)  # token embeddings [V, D]: vocabulary over `model`
HIDDEN = P(None, FSDP)  # position tables and other [N, D] embeddings: hidden over `fsdp`
REPLICATED = P()  # norms, biases, scalars


def create_mesh(data: int = -1, fsdp: int = 1, model: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A mesh with axes exactly ``("data", "fsdp", "model")`` over ``devices`` (default: every device of every process).

    One size may be -1: it takes all the remaining devices. ``create_mesh()`` is pure data parallelism;
    ``create_mesh(data=2, model=4)`` on 8 devices is 2-way data x 4-way tensor parallelism. Devices are laid out
    with ``model`` innermost, so tensor-parallel groups are neighbours (the fastest links on a GPU host).
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = {DATA: data, FSDP: fsdp, MODEL: model}
    for name, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or (size < 1 and size != -1):
            raise ValueError(f"create_mesh: {name}={size!r} must be a positive integer or -1 (all remaining devices).")
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(f"create_mesh: only one axis may be -1, got {', '.join(free)}.")
    fixed = int(np.prod([s for s in sizes.values() if s != -1]))
    if free:
        if len(devices) % fixed:
            raise ValueError(
                f"create_mesh: {len(devices)} devices do not divide into {_describe(sizes)}: the fixed axes need a "
                f"multiple of {fixed} devices. Choose sizes whose product divides {len(devices)}."
            )
        sizes[free[0]] = len(devices) // fixed
    total = int(np.prod(list(sizes.values())))
    if total != len(devices):
        raise ValueError(
            f"create_mesh: {_describe(sizes)} needs {total} devices, but {len(devices)} are available; "
            f"the sizes must multiply to {len(devices)} (use -1 for one axis to take the rest)."
        )
    grid = np.array(devices, dtype=object).reshape(sizes[DATA], sizes[FSDP], sizes[MODEL])  # [data, fsdp, model]
    return Mesh(grid, MESH_AXES)


def _describe(sizes: Mapping[str, int]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ")"


def as_mesh(mesh: Any) -> Mesh:
    """Accept a Mesh from ``create_mesh`` (or any Mesh whose axes include the ones the rules name)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (see fxformers.create_mesh), got {type(mesh).__name__}.")
    return mesh


# -- rules -> specs ---------------------------------------------------------------------------------------------------
def match_rules(rules: PartitionRules, paths: Iterable[str]) -> tuple[dict[str, P], list[str], list[int]]:
    """(path -> spec for the covered paths, uncovered paths, indices of rules that matched nothing)."""
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]
    used = [False] * len(compiled)
    specs, uncovered = {}, []
    for path in paths:
        for i, (pattern, spec) in enumerate(compiled):
            if pattern.search(path):
                specs[path] = spec
                used[i] = True
                break
        else:
            uncovered.append(path)
    return specs, uncovered, [i for i, u in enumerate(used) if not u]


def check_rules(rules: PartitionRules, shapes: Mapping[str, Sequence[int]], *, what: str = "the model",
                allow_unused: bool = False) -> dict[str, P]:
    """Specs for every path of ``shapes`` ({flat path: shape}); raises ValueError naming every uncovered parameter,
    every rule that matches nothing (unless ``allow_unused``), and every spec whose rank exceeds its parameter's."""
    specs, uncovered, unused = match_rules(rules, shapes)
    problems = []
    if uncovered:
        problems.append(f"parameters no partition rule covers ({len(uncovered)}): {', '.join(uncovered)}")
    if unused and not allow_unused:
        problems.append("partition rules that match no parameter: " + ", ".join(repr(rules[i][0]) for i in unused))
    bad_rank = [f"{p} (shape {tuple(shapes[p])}, spec {s})" for p, s in specs.items() if len(s) > len(shapes[p])]
    if bad_rank:
        problems.append("specs with more dimensions than their parameter: " + ", ".join(bad_rank))
    for p, s in specs.items():
        for axis in _axes_of(s):
            if axis not in MESH_AXES or axis == DATA:
                problems.append(f"{p}: spec {s} names the axis {axis!r}; rules may split over 'fsdp' and 'model' only")
    if problems:
        raise ValueError(f"Partition rules do not fit {what}:\n- " + "\n- ".join(problems))
    return specs


def _axes_of(spec: P) -> list[str]:
    out = []
    for entry in spec:
        if entry is None:
            continue
        out.extend(entry if isinstance(entry, tuple) else (entry,))
    return out


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    """``spec`` padded to the rank of ``shape``, with every split the mesh cannot divide evenly dropped.

    Axes of size 1 are dropped too (a no-op split), so a 1-device mesh gives fully replicated specs.
    """
    entries = list(spec) + [None] * (len(shape) - len(spec))
    fitted = []
    for dim, entry in zip(shape, entries):
        axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        kept = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1)
        size = int(np.prod([mesh.shape[a] for a in kept])) if kept else 1
        if kept and dim % size:
            logger.debug("dimension %d is not divisible by %s (%d devices): left unsplit", dim, kept, size)
            kept = ()
        fitted.append(None if not kept else kept[0] if len(kept) == 1 else kept)
    while fitted and fitted[-1] is None:
        fitted.pop()
    return P(*fitted)


def param_shardings(rules: PartitionRules, tree: Any, mesh: Mesh, *, what: str = "the model") -> Any:
    """A ``NamedSharding`` per leaf of the params ``tree`` (arrays or ShapeDtypeStructs), from ``rules``.

    Rules that match nothing are allowed here (one family table serves all its task heads); a parameter no rule
    covers is an error.
    """
    from .convert import flatten, unflatten

    flat = flatten(tree)
    shapes = {p: tuple(getattr(v, "shape", ())) for p, v in flat.items()}
    specs = check_rules(rules, shapes, what=what, allow_unused=True)
    return unflatten({p: NamedSharding(mesh, fit_spec(specs[p], shapes[p], mesh)) for p in flat})


def batch_spec(ndim: int, leading_axes: int = 0) -> P:
    """Split a batch array's batch axis (after ``leading_axes`` unsplit axes) over ``data`` and ``fsdp``."""
    return P(*([None] * leading_axes), BATCH_AXES, *([None] * (ndim - leading_axes - 1)))


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """The sharding of a batch whose batch axis comes after ``leading_axes`` unsplit axes."""
    return NamedSharding(mesh, P(*([None] * leading_axes), BATCH_AXES))


def batch_shards(mesh: Mesh) -> int:
    """How many ways a batch is split (data x fsdp)."""
    return int(mesh.shape.get(DATA, 1) * mesh.shape.get(FSDP, 1))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def bytes_per_device(tree: Any) -> dict[Any, int]:
    """{device: bytes of the shards of ``tree``'s arrays that live on it}."""
    out: dict[Any, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out


def gather_to_host(array: Any) -> np.ndarray:
    """One array, whole, as numpy on this host: a sharded array is gathered from its shards (from every process's
    devices when it spans several processes); numpy input is returned as is."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(jax.device_get(array))


#: A key/value cache leaf [B, L, K, H]: batch over the batch axes, heads over `model` (as q/k/v are split).
KV_CACHE = P(BATCH_AXES, None, MODEL, None)


def constrain_kv_cache(state: Any, mesh: Optional[Mesh]) -> Any:
    """Inside a jitted program: lay out every ``{"key", "value"}`` cache leaf [B, L, K, H] of ``state`` as
    ``KV_CACHE`` on ``mesh`` (a no-op without one), so GSPMD keeps the cache split over batch and heads."""
    if mesh is None:
        return state

    def leaf(path, x):
        name = getattr(path[-1], "key", None) if path else None
        if name in ("key", "value") and getattr(x, "ndim", 0) == 4:
            return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, fit_spec(KV_CACHE, x.shape, mesh)))
        return x

    return jax.tree_util.tree_map_with_path(leaf, state)


def place_batch(inputs: Mapping[str, Any], mesh: Mesh) -> dict:
    """Host or device arrays -> arrays on ``mesh``, each split over the batch axes when its leading dimension
    divides evenly (replicated otherwise); tracers are left to the enclosing jit."""
    out = {}
    for name, value in inputs.items():
        if isinstance(value, jax.core.Tracer) or not hasattr(value, "shape"):
            out[name] = value
            continue
        spec = batch_spec(value.ndim) if value.ndim else P()
        out[name] = jax.device_put(value, NamedSharding(mesh, fit_spec(spec, value.shape, mesh)))
    return out
