"""``fxformers launch`` and ``initialize_distributed``: 2 real JAX processes on 127.0.0.1 (gloo), failure and timeout
handling with cheap child processes, and the environment rules (single-task SLURM / MPI jobs stay single-process)."""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fxformers import launch
from fxformers.distributed import distributed_request

ROOT = Path(__file__).resolve().parents[1]
PSUM = """
import sys, jax, jax.numpy as jnp
from jax.experimental import multihost_utils
x = multihost_utils.process_allgather(jnp.array([jax.process_index() + 1.0]))
print("procs", jax.process_count(), "devices", jax.device_count(), "gathered", x.ravel().tolist(), "argv", sys.argv[1:])
"""


def run_launch(args, timeout=90, env=None):
    """``python -m fxformers launch ...`` in its own process group, killed (with its children) on timeout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    p = subprocess.Popen([sys.executable, "-m", "fxformers", "launch", *args], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()
    return p.returncode, out


def test_two_processes_on_localhost(tmp_path):
    script = tmp_path / "psum.py"
    script.write_text(PSUM)
    code, out = run_launch(["--num_processes", "2", "--cpu_devices_per_process", "2", "--timeout", "80",
                            str(script), "a", "--flag"])
    assert code == 0, out
    for rank in (0, 1):
        assert f"[rank{rank}] procs 2 devices 4 gathered [1.0, 2.0] argv ['a', '--flag']" in out, out


def _fake_args(tmp_path, n, timeout=None):
    return argparse.Namespace(num_processes=n, coordinator_address=None, timeout=timeout, cpu_devices_per_process=None,
                              module=False, script="x.py", script_args=[])


def _children(monkeypatch, tmp_path, bodies):
    """Replace each rank's command with a tiny Python program that records its pid, then runs ``bodies[rank]``."""

    def command(args, rank, coordinator):
        assert coordinator.startswith("127.0.0.1:")
        code = f"import os, sys, time; open({str(tmp_path / f'pid{rank}')!r}, 'w').write(str(os.getpid())); " \
               f"print('hello from', {rank}, flush=True); {bodies[rank]}"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(launch, "child_command", command)


def _assert_all_gone(tmp_path, n):
    for rank in range(n):
        pid = int((tmp_path / f"pid{rank}").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_failing_rank_stops_the_others(monkeypatch, tmp_path, capsys):
    _children(monkeypatch, tmp_path, ["time.sleep(60)", "time.sleep(0.5); sys.exit(3)"])
    start = time.monotonic()
    assert launch.spawn(_fake_args(tmp_path, 2)) == 3
    assert time.monotonic() - start < 30
    _assert_all_gone(tmp_path, 2)
    out = capsys.readouterr()
    assert "[rank0] hello from 0" in out.out and "[rank1] hello from 1" in out.out
    assert "rank 1 exited with code 3" in out.err


def test_timeout_stops_every_rank(monkeypatch, tmp_path, capsys):
    _children(monkeypatch, tmp_path, ["time.sleep(60)", "time.sleep(60)"])
    assert launch.spawn(_fake_args(tmp_path, 2, timeout=2)) == 124
    _assert_all_gone(tmp_path, 2)
    assert "timed out" in capsys.readouterr().err


def test_success_when_every_rank_succeeds(monkeypatch, tmp_path):
    _children(monkeypatch, tmp_path, ["pass", "time.sleep(0.3)"])
    assert launch.spawn(_fake_args(tmp_path, 2)) == 0


def test_child_command_joins_the_run():
    args = launch.build_parser().parse_args(["--num_processes", "4", "--cpu_devices_per_process", "2", "t.py", "--lr", "1"])
    cmd = launch.child_command(args, 3, "127.0.0.1:1234")
    assert cmd[1:] == ["-m", "fxformers.launch", "--num_processes", "4", "--process_id", "3", "--coordinator_address",
                       "127.0.0.1:1234", "--cpu_devices_per_process", "2", "t.py", "--lr", "1"]


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"SLURM_NTASKS": "1", "SLURM_JOB_ID": "7"}, None),  # a single-task SLURM job is a plain single process
    ({"OMPI_COMM_WORLD_SIZE": "1"}, None),
    ({"SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}, {}),  # jax.distributed detects the rest
    ({"OMPI_COMM_WORLD_SIZE": "2"}, {}),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:5", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     {"coordinator_address": "127.0.0.1:5", "num_processes": 2, "process_id": 1}),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:5", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}, None),
])
def test_environment_rules(monkeypatch, env, expected):
    for name in ("SLURM_NTASKS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                 "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert distributed_request() == expected


def test_coordinator_alone_names_what_is_missing(monkeypatch):
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:5")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES and JAX_PROCESS_ID are not"):
        distributed_request()


def test_initialize_after_the_backend_started_says_what_to_do(monkeypatch):
    import jax

    from fxformers.distributed import initialize_distributed

    jax.devices()  # the backend is running
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="top of the script"):
        initialize_distributed()
