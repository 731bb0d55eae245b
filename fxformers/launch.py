"""``fxformers launch``: start (or join) a multi-process JAX run, in the habits of ``torchrun`` / ``accelerate launch``.

    fxformers launch --num_processes 2 --cpu_devices_per_process 2 train.py --my-arg 1     # 2 processes here
    fxformers launch --num_processes 4 --process_id 1 --coordinator_address host0:1234 train.py   # join, on a node
    srun fxformers launch train.py                                                        # SLURM / Open MPI tasks
    python -m fxformers.launch ...                                                        # the same

Three modes:

- **spawn** (``--num_processes N`` with N > 1 and no ``--process_id``): starts N processes on this machine, joined
  through a coordinator on 127.0.0.1 and a free port (or ``--coordinator_address``), forwards their output line by
  line with a ``[rank i]`` prefix, and exits with the first failing process's code after stopping the others
  (``--timeout`` bounds the whole run: 124 when it expires).
- **join** (``--process_id I``): this process is rank I of N: ``jax.distributed.initialize`` with the given
  coordinator, then the script.
- **environment** (no ``--num_processes``): SLURM or Open MPI tasks are detected (see ``fxformers.distributed``);
  a single task runs as a plain single-process job.

In every mode ``jax.distributed`` is initialised before the script runs any JAX; the script then runs as
``__main__`` (``runpy``) with ``sys.argv = [script, *args]``. ``--cpu_devices_per_process K`` gives each process K
simulated CPU devices (tests, laptops); CPU collectives across processes use gloo (JAX's default).
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Optional, Sequence

from .distributed import COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV

LOCALHOST = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="fxformers launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_processes", "--num-processes", type=int, default=None,
                        help="total number of processes (default: from SLURM / Open MPI, else 1)")
    parser.add_argument("--process_id", "--process-id", type=int, default=None,
                        help="this process's rank (join mode, one call per node); omit to spawn all locally")
    parser.add_argument("--coordinator_address", "--coordinator-address", default=None,
                        help="HOST:PORT of process 0's coordinator (default when spawning: 127.0.0.1 and a free port)")
    parser.add_argument("--cpu_devices_per_process", "--cpu-devices-per-process", type=int, default=None,
                        help="simulate K CPU devices in each process (sets JAX_PLATFORMS=cpu unless already set)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before every process is stopped (exit code 124)")
    parser.add_argument("-m", "--module", action="store_true", help="run the script argument as a module (python -m)")
    parser.add_argument("script", help="the Python script (or module with -m) every process runs")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port free on ``host`` now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_processes is not None and args.num_processes < 1:
        raise SystemExit(f"fxformers launch: --num_processes must be at least 1, got {args.num_processes}.")
    if args.process_id is not None:
        if args.num_processes is None or args.coordinator_address is None:
            raise SystemExit("fxformers launch: --process_id needs --num_processes and --coordinator_address "
                             "(the same on every node).")
        if not 0 <= args.process_id < args.num_processes:
            raise SystemExit(f"fxformers launch: --process_id {args.process_id} is outside 0..{args.num_processes - 1}.")
        return run_here(args, distributed=args.num_processes > 1)
    if args.num_processes is not None and args.num_processes > 1:
        return spawn(args)
    return run_here(args, distributed=args.num_processes is None)


# -- in this process --------------------------------------------------------------------------------------------------
def run_here(args: argparse.Namespace, distributed: bool) -> int:
    """Configure JAX, join the run (join mode, or whatever the environment describes), then run the script."""
    if args.timeout:
        signal.alarm(int(max(1, args.timeout)))  # SIGALRM's default action ends the process
    import jax

    if args.cpu_devices_per_process:
        if not os.environ.get("JAX_PLATFORMS"):
            jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", int(args.cpu_devices_per_process))
    from .distributed import initialize_distributed

    if args.process_id is not None and distributed:
        os.environ.update({COORDINATOR_ENV: args.coordinator_address, NUM_PROCESSES_ENV: str(args.num_processes),
                           PROCESS_ID_ENV: str(args.process_id)})
        initialize_distributed(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                               process_id=args.process_id)
    elif distributed:
        initialize_distributed()
    if jax.process_count() == 1:
        return run_script(args.script, args.script_args, module=args.module)
    try:
        code = run_script(args.script, args.script_args, module=args.module)
    except BaseException:  # noqa: BLE001 - reported, then this rank ends at once
        traceback.print_exc()
        code = 1
    if code != 0:
        # A failed rank leaves now: the normal exit would wait in jax.distributed's shutdown barrier for ranks
        # that may be blocked in a collective with this one, and nobody would see the failure until they time out.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run_script(script: str, script_args: Sequence[str], module: bool = False) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *script_args]``; its SystemExit code is returned."""
    argv, path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    try:
        if module:
            runpy.run_module(script, run_name="__main__", alter_sys=True)
        else:
            if not os.path.isfile(script):
                raise SystemExit(f"fxformers launch: no such script: {script}")
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script.py` does
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = argv, path
    return 0


# -- spawning N local processes -------------------------------------------------------------------------------------
def child_command(args: argparse.Namespace, rank: int, coordinator: str) -> list[str]:
    cmd = [sys.executable, "-m", "fxformers.launch", "--num_processes", str(args.num_processes),
           "--process_id", str(rank), "--coordinator_address", coordinator]
    if args.cpu_devices_per_process:
        cmd += ["--cpu_devices_per_process", str(args.cpu_devices_per_process)]
    if args.module:
        cmd.append("--module")
    return cmd + [args.script, *args.script_args]


def _forward(stream, rank: int, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"[rank{rank}] {line}" if line.endswith("\n") else f"[rank{rank}] {line}\n")
            sys.stdout.flush()
    stream.close()


def stop(processes: Sequence[subprocess.Popen], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each still-running child's process group, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in processes if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)  # each child leads its own group (start_new_session), so this is only ours
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def spawn(args: argparse.Namespace) -> int:
    """Start ``args.num_processes`` ranks here; return 0, the first failure's exit code, or 124 on timeout."""
    coordinator = args.coordinator_address or f"{LOCALHOST}:{free_port()}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes: list[subprocess.Popen] = []
    threads: list[threading.Thread] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signum)

    for s in previous:
        signal.signal(s, interrupted)
    code = 0
    try:
        for rank in range(args.num_processes):
            p = subprocess.Popen(child_command(args, rank, coordinator), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
            processes.append(p)
            t = threading.Thread(target=_forward, args=(p.stdout, rank, lock), daemon=True)
            t.start()
            threads.append(t)
        while True:
            codes = [p.poll() for p in processes]
            failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                print(f"fxformers launch: rank {rank} exited with code {code}; stopping the others.", file=sys.stderr)
                break
            if all(c == 0 for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                print(f"fxformers launch: timed out after {args.timeout:g} s; stopping every process.", file=sys.stderr)
                code = 124
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        code = 130
    finally:
        stop(processes)
        for t in threads:
            t.join(timeout=2)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
