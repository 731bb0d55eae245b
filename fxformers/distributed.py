"""Many processes through JAX's own runtime: when to call ``jax.distributed.initialize``, barriers, process 0.

JAX is multi-controller: every host runs the same script, each process drives its local devices, and
``jax.distributed.initialize`` joins them into one set of global devices. It must run before anything starts a
JAX backend (the first array, ``jax.devices()``, loading a model), so it belongs at the very top of a script, or in
the launcher (``fxformers launch``), which calls it before the script runs.

``initialize_distributed()`` decides from the environment:

- ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (what ``fxformers launch`` sets
  for its children, and what a hand-written launch script can set);
- SLURM (``SLURM_NTASKS`` > 1) or Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1): JAX's own cluster detection;
- anything else, including a single-task SLURM or MPI job, is one process and is never initialised as distributed.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import jax

logger = logging.getLogger(__name__)

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
#: (variable holding the task count, cluster name) of the schedulers JAX detects by itself.
CLUSTER_TASK_COUNTS = (("SLURM_NTASKS", "SLURM"), ("OMPI_COMM_WORLD_SIZE", "Open MPI"))


def is_initialized() -> bool:
    """True once ``jax.distributed.initialize`` has run in this process."""
    return jax.distributed.is_initialized()


def _int_env(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.split("(")[0])  # SLURM may write "4(x2)"
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer.") from None


def distributed_request() -> Optional[dict]:
    """The keyword arguments for ``jax.distributed.initialize`` that the environment asks for, or None when it
    describes a single process. Raises ValueError for an incomplete description."""
    address = os.environ.get(COORDINATOR_ENV)
    if address:
        num, pid = _int_env(NUM_PROCESSES_ENV), _int_env(PROCESS_ID_ENV)
        missing = [name for name, v in ((NUM_PROCESSES_ENV, num), (PROCESS_ID_ENV, pid)) if v is None]
        if missing and not any((_int_env(v) or 0) > 1 for v, _ in CLUSTER_TASK_COUNTS):
            raise ValueError(
                f"{COORDINATOR_ENV}={address} is set but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: set {NUM_PROCESSES_ENV} (the number of processes) and "
                f"{PROCESS_ID_ENV} (this process's rank, 0 to N-1) as well, or start the run with "
                "`fxformers launch --num_processes N script.py`, which sets all three."
            )
        if num is not None and num <= 1:
            return None
        return {"coordinator_address": address, "num_processes": num, "process_id": pid}
    for variable, cluster in CLUSTER_TASK_COUNTS:
        count = _int_env(variable)
        if count is not None and count > 1:
            logger.info("%s job with %d tasks: initialising jax.distributed from its environment", cluster, count)
            return {}
    return None


def initialize_distributed(**kwargs: Any) -> bool:
    """Join this process to a multi-process run (``jax.distributed.initialize``) when one is configured.

    Call it first thing in a script (before any JAX computation or model loading), or start the script with
    ``fxformers launch``, which calls it for you. Keyword arguments go to ``jax.distributed.initialize``
    (``coordinator_address``, ``num_processes``, ``process_id`` ...) and force initialisation; without them the
    environment decides (see the module docstring). Idempotent; returns True when this process is part of a
    distributed run.
    """
    if is_initialized():
        return True
    request = dict(kwargs) if kwargs else distributed_request()
    if request is None:
        return False
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            "This process is part of a multi-process run (the environment describes one: "
            f"{_describe_environment()}), but JAX already started its single-process backend, so "
            "jax.distributed.initialize() can no longer run. Call fxformers.initialize_distributed() at the top of "
            "the script, before loading a model or creating any array, or start it with "
            "`fxformers launch --num_processes N script.py ...`."
        )
    jax.distributed.initialize(**{k: v for k, v in request.items() if v is not None})
    logger.info("jax.distributed initialised: process %d of %d, %d local / %d global devices",
                jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def _describe_environment() -> str:
    names = [COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV] + [v for v, _ in CLUSTER_TASK_COUNTS]
    return ", ".join(f"{n}={os.environ[n]}" for n in names if n in os.environ) or "keyword arguments"


def is_main_process() -> bool:
    """True on process 0, the one that logs and writes files."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)`` (a no-op on one process). Names must match across
    processes and be unique per use, e.g. ``f"save-{step}"``."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
