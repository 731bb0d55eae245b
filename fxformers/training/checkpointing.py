"""Training checkpoints: ``output_dir/checkpoint-{step}`` folders that are either complete or absent.

A checkpoint holds the whole ``TrainState`` (params, optimizer state, step, rng, data position) written with
orbax under ``state/``, ``state_structure.json`` (the leaf paths, to explain a mismatch on restore) and
``trainer_state.json`` (step, epoch, log history ...), written last.

Atomicity: everything is written into ``.tmp-checkpoint-{step}`` first, flushed, and only then renamed to
``checkpoint-{step}``. A crash or a full disk mid-save leaves a temporary folder that nothing reads (the next save
removes it) and the previous checkpoints untouched. Rotation (``save_total_limit``) runs only after the new
checkpoint is complete, never removes the checkpoint just written (even when an older run left higher-numbered
ones), and ignores folders that are not complete.

Resuming (``load_latest_checkpoint``) verifies a checkpoint before using it: a damaged newest checkpoint (an
unreadable ``trainer_state.json``, broken orbax metadata) is named in a warning and the next newest complete one
is used instead; ``load_checkpoint`` on a damaged folder raises ``CheckpointError`` naming it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

from ..checkpoints.atomic import atomic_write_text, fsync_dir
from ..checkpoints.errors import CheckpointError
from ..optimization import path_str

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-" + PREFIX
STATE_DIR = "state"
STRUCTURE_FILE = "state_structure.json"
TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX}(\d+)$")


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _leaf_keys(tree: Any) -> tuple[list[str], list[Any], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(kp) for kp, _ in flat], [leaf for _, leaf in flat], treedef


def _write_state(folder: Path, state: Any) -> None:
    paths, leaves, _ = _leaf_keys(state)
    checkpointer = _checkpointer()
    # orbax accepts absolute paths only; output_dir is often relative ("out", as in Transformers' examples)
    checkpointer.save((folder / STATE_DIR).absolute(), {f"{i:05d}": leaf for i, leaf in enumerate(leaves)})
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        atomic_write_text(folder / STRUCTURE_FILE, json.dumps(paths, indent=0))


def save_checkpoint(output_dir: str | os.PathLike, state: Any, trainer_state: dict,
                    save_total_limit: Optional[int] = None, keep: Optional[str | os.PathLike] = None) -> Path:
    """Write ``state`` and ``trainer_state`` to ``output_dir/checkpoint-{state.step}`` atomically; then rotate.

    All processes call it (orbax writes each process's shards); process 0 renames and rotates.
    Returns the checkpoint folder.
    """
    output_dir = Path(output_dir)
    step = int(jax.device_get(state.step))
    final, tmp = output_dir / f"{PREFIX}{step}", output_dir / f"{TMP_PREFIX}{step}"
    primary = jax.process_index() == 0
    if primary:
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed save of the same step
        tmp.mkdir()
    _sync(f"fxformers-ckpt-begin-{step}")
    _write_state(tmp, state)
    if primary:
        atomic_write_text(tmp / TRAINER_STATE_NAME, json.dumps(trainer_state, indent=2, default=_json_default))
        fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. after a resume): swap in the new folder, then drop the old one
            old = output_dir / f".old-{PREFIX}{step}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(output_dir)
        logger.info("Saved checkpoint %s", final)
        rotate_checkpoints(output_dir, save_total_limit, current=final, keep=keep)
    _sync(f"fxformers-ckpt-end-{step}")
    return final


def is_complete(folder: str | os.PathLike) -> bool:
    """A ``checkpoint-N`` folder with its state and its trainer_state.json (the file written last)."""
    folder = Path(folder)
    return bool(_CHECKPOINT_RE.match(folder.name)) and (folder / TRAINER_STATE_NAME).is_file() and (folder / STATE_DIR).is_dir()


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_CHECKPOINT_RE.match(p.name).group(1)))


def latest_checkpoint(output_dir: str | os.PathLike) -> Optional[Path]:
    """The complete checkpoint with the highest step, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def rotate_checkpoints(output_dir: str | os.PathLike, save_total_limit: Optional[int],
                       current: Optional[str | os.PathLike] = None,
                       keep: Optional[str | os.PathLike] = None) -> list[Path]:
    """Keep the newest ``save_total_limit`` complete checkpoints (at least one), always counting ``current`` (the
    checkpoint just written) among them whatever its step, and ``keep`` (the best one, for
    ``load_best_model_at_end``); remove older ones and stale temporary folders. Returns the removed checkpoints."""
    output_dir = Path(output_dir)
    for pattern in (f"{TMP_PREFIX}*", f".old-{PREFIX}*"):
        for stale in output_dir.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    if save_total_limit is None:
        return []
    complete = list_checkpoints(output_dir)
    limit = max(1, int(save_total_limit))
    if current is not None:
        current = Path(current).resolve()
        complete = [p for p in complete if p.resolve() != current]
        limit -= 1
    removed = [f for f in complete[: max(len(complete) - limit, 0)] if keep is None or f.name != Path(keep).name]
    for folder in removed:
        logger.info("Deleting older checkpoint %s (save_total_limit=%s)", folder, save_total_limit)
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _read_json(folder: Path, name: str, kind: type) -> Any:
    path = folder / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(
            f"The checkpoint {folder} is damaged: {path} is unreadable ({type(err).__name__}: {str(err)[:200]}). "
            "Resume from an earlier checkpoint (resume_from_checkpoint=True skips damaged ones) or delete it."
        ) from err
    if not isinstance(value, kind):
        raise CheckpointError(f"The checkpoint {folder} is damaged: {path} holds a {type(value).__name__}, "
                              f"not a JSON {'object' if kind is dict else 'list'}.")
    return value


def load_latest_checkpoint(output_dir: str | os.PathLike, target: Any, shardings: Any = None) -> tuple[Any, dict, Path]:
    """``load_checkpoint`` of the newest complete checkpoint in ``output_dir`` that loads: a damaged one is
    named in a warning and skipped. Returns (state, trainer_state dict, the folder used)."""
    candidates = list_checkpoints(output_dir)
    damaged = []
    for folder in reversed(candidates):
        try:
            state, trainer_state = load_checkpoint(folder, target, shardings)
        except CheckpointError as err:
            logger.warning("Skipping a damaged checkpoint: %s", err)
            damaged.append(folder.name)
            continue
        if damaged:
            logger.warning("Resuming from %s, the newest checkpoint that loads (skipped %s).", folder, damaged)
        return state, trainer_state, folder
    detail = f" ({len(damaged)} damaged: {', '.join(damaged)})" if damaged else ""
    raise ValueError(f"No valid checkpoint found in output directory ({output_dir}){detail}.")


def load_checkpoint(folder: str | os.PathLike, target: Any, shardings: Any = None) -> tuple[Any, dict]:
    """Restore a state shaped like ``target`` (a TrainState of arrays or ShapeDtypeStructs) from ``folder``.

    ``shardings``: a tree like ``target`` of ``jax.sharding.Sharding`` to lay the arrays out (default: each
    target leaf's own sharding, or the default device). Returns (state, trainer_state dict).
    """
    folder = Path(folder)
    if not is_complete(folder):
        raise FileNotFoundError(
            f"{folder} is not a complete checkpoint (it needs {STATE_DIR}/ and {TRAINER_STATE_NAME}); "
            "pass resume_from_checkpoint=True to pick the latest complete one."
        )
    trainer_state = _read_json(folder, TRAINER_STATE_NAME, dict)
    paths, leaves, treedef = _leaf_keys(target)
    saved_paths = _read_json(folder, STRUCTURE_FILE, list)
    if saved_paths != paths:
        missing = sorted(set(paths) - set(saved_paths))[:5]
        extra = sorted(set(saved_paths) - set(paths))[:5]
        raise ValueError(
            f"The checkpoint {folder} holds a different training state ({len(saved_paths)} arrays, this run has "
            f"{len(paths)}): missing {missing}, unexpected {extra}. Resume with the same model, optimizer settings "
            "(weight decay, clipping, freezing, accumulation) and fsdp choice that wrote it."
        )
    sharding_leaves = jax.tree_util.tree_leaves(shardings) if shardings is not None else [None] * len(leaves)
    abstract = {}
    for i, (leaf, sharding) in enumerate(zip(leaves, sharding_leaves)):
        sharding = sharding if sharding is not None else getattr(leaf, "sharding", None)
        abstract[f"{i:05d}"] = jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=sharding)
    try:
        restored = _checkpointer().restore((folder / STATE_DIR).absolute(), abstract)
        state = jax.tree_util.tree_unflatten(treedef, [restored[f"{i:05d}"] for i in range(len(leaves))])
    except Exception as err:  # orbax: metadata or array files damaged or missing
        raise CheckpointError(
            f"The checkpoint {folder} is damaged: restoring {folder / STATE_DIR} failed ({type(err).__name__}: "
            f"{str(err)[:300]}). Resume from an earlier checkpoint (resume_from_checkpoint=True skips damaged "
            "ones) or delete it."
        ) from err
    return state, trainer_state


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).item()
    raise TypeError(f"Cannot write {type(value).__name__} to {TRAINER_STATE_NAME}")
