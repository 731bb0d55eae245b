"""The Trainer on 2 processes x 2 CPU devices (``fxformers launch``, gloo on 127.0.0.1) against 1 process x 4 devices:
variable-length text, data parallel and FSDP, a model loaded onto a (data 2, model 2) mesh spanning both processes,
predict, save_model read by PyTorch, resume in 2 processes and in 1, and single-task SLURM / Open MPI environments
running as plain single-process jobs. (The mesh run is named "tp": a test id holding "mesh" would be skipped as an
8-device test by conftest.py.)

Every run is a subprocess in its own process group, killed with its children if it overruns.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("multihost_train.py")
RUN_TIMEOUT = 400  # seconds for each run; a healthy run takes a small fraction


def start(args, out: Path, **env):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **env)
    log = open(out.with_suffix(".log"), "w")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True), log


def finish(processes, timeout=RUN_TIMEOUT):
    """Wait for every (process, log); kill each one's whole group if it overruns or the wait is interrupted."""
    try:
        for p, _ in processes:
            p.wait(timeout=timeout)
    finally:
        for p, log in processes:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
            log.close()
    for p, log in processes:
        assert p.returncode == 0, Path(log.name).read_text()[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("multihost")
    cache = dict(JAX_COMPILATION_CACHE_DIR=str(base / "jax-cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    two = start(["-m", "fxformers", "launch", "--num_processes", "2", "--cpu_devices_per_process", "2",
                 "--timeout", str(RUN_TIMEOUT - 10), str(SCRIPT), str(base / "two"), "full"], base / "two", **cache)
    # the reference, as a single-task Open MPI job (which must not try to be distributed)
    one = start([str(SCRIPT), str(base / "one"), "full"], base / "one", OMPI_COMM_WORLD_SIZE="1",
                JAX_NUM_CPU_DEVICES="4", **cache)
    finish([two, one])
    # the 2-process checkpoint resumed on 1 process and 1 device, as a single-task SLURM job
    resume = start([str(SCRIPT), str(base / "resume"), "resume", str(base / "two" / "run-dp" / "checkpoint-2")],
                   base / "resume", SLURM_NTASKS="1", SLURM_JOB_ID="1", **cache)
    finish([resume])
    return base


def params(folder: Path, name: str) -> dict:
    return dict(np.load(folder / f"params-{name}.npz"))


def assert_close(a: dict, b: dict, tol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


def test_layouts_ran_where_expected(runs):
    assert json.loads((runs / "two" / "info.json").read_text()) == {"processes": 2, "devices": 4}
    assert json.loads((runs / "one" / "info.json").read_text()) == {"processes": 1, "devices": 4}
    assert json.loads((runs / "resume" / "info.json").read_text()) == {"processes": 1, "devices": 1}
    log = (runs / "two.log").read_text()
    assert "[rank0]" in log and "[rank1]" in log


@pytest.mark.parametrize("name", ["dp", "fsdp", "tp"])
def test_two_processes_equal_one(runs, name):
    assert_close(params(runs / "two", name), params(runs / "one", name))
    np.testing.assert_allclose(np.load(runs / "two" / f"predictions-{name}.npy"),
                               np.load(runs / "one" / f"predictions-{name}.npy"), rtol=1e-5, atol=1e-5)


def test_resume_in_two_processes_and_in_one(runs):
    uninterrupted = params(runs / "two", "dp")
    assert_close(params(runs / "two", "resumed"), uninterrupted)
    assert_close(params(runs / "resume", "resumed"), uninterrupted)


@pytest.mark.parametrize("name", ["dp", "fsdp", "tp"])
def test_saved_model_loads_in_pytorch(runs, name):
    torch = pytest.importorskip("torch")
    from transformers import BertForSequenceClassification

    def load(folder):
        model, info = BertForSequenceClassification.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        return {k: v.numpy() for k, v in model.state_dict().items()}

    with torch.no_grad():
        two, one = load(runs / "two" / f"model-{name}"), load(runs / "one" / f"model-{name}")
    assert_close(two, one)
    # and the file holds the trained weights, not the initial ones
    from fxformers.models.bert.modeling import BertForSequenceClassification as Fx

    trained = Fx.from_pretrained(runs / "two" / f"model-{name}")
    from fxformers.convert import flatten

    trained = {k: np.asarray(v) for k, v in flatten(trained.params).items()}
    assert_close(trained, params(runs / "two", name))
    if name == "tp":  # it trained: the weights moved from the ones it was loaded with
        initial = {k: np.asarray(v) for k, v in flatten(Fx.from_pretrained(runs / "two" / "init-0").params).items()}
        moved = [k for k in trained if not np.allclose(trained[k], initial[k], rtol=1e-5, atol=1e-5)]
        assert "bert/encoder/layer_0/attention/query/kernel" in moved, moved
