"""Run a snippet under Transformers 4 (the ``.venv4`` interpreter) and get numpy arrays back.

The test suite runs in the Transformers 5 environment, yet hub checkpoints (T5 v1.1 untied heads, the removed
pipelines) were written for Transformers 4. ``run_v4`` runs ``script`` in ``.venv4``'s python in a subprocess:

* ``inputs`` ({name: array}) are available to the script as the dict ``inputs`` (numpy arrays);
* the script fills the dict ``outputs`` with {name: array-like}; they come back as numpy arrays;
* ``np`` (numpy), ``torch``, ``transformers`` are imported and ``tmp`` (a pathlib.Path to a scratch folder) is set.

Example::

    out = run_v4('''
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(inputs_path))
    outputs["logits"] = model(input_ids=torch.tensor(inputs["ids"])).logits.detach().numpy()
    ''', {"ids": ids})

Strings (a checkpoint folder, say) pass as 0-d numpy string arrays: ``np.array(str(folder))``, read back with
``str(inputs["folder"])``.

The interpreter is ``$FXFORMERS_V4_PYTHON`` or ``<repo>/.venv4/bin/python``; when it is missing or lacks
transformers 4.x, ``run_v4`` calls ``pytest.skip`` with the reason (``v4_available()`` tells without skipping).
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

_PRELUDE = """\
import sys, pathlib
import numpy as np
import torch
import transformers
tmp = pathlib.Path(sys.argv[1])
with np.load(tmp / "inputs.npz", allow_pickle=False) as _f:
    inputs = {k: _f[k] for k in _f.files}
outputs = {}
torch.manual_seed(0)
"""

_EPILOGUE = """
def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
np.savez(tmp / "outputs.npz", **{k: _to_numpy(v) for k, v in outputs.items()})
"""


def v4_python() -> Path:
    return Path(os.environ.get("FXFORMERS_V4_PYTHON", REPO / ".venv4" / "bin" / "python"))


@functools.lru_cache(maxsize=None)
def _probe(python: str) -> tuple[bool, str]:
    if not Path(python).exists():
        return False, f"no Transformers 4 interpreter at {python} (create .venv4 or set FXFORMERS_V4_PYTHON)"
    try:
        proc = subprocess.run(
            [python, "-c", "import torch, transformers; print(transformers.__version__)"],
            capture_output=True, text=True, timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{python} failed to start: {err}"
    if proc.returncode != 0:
        return False, f"{python} cannot import torch and transformers: {proc.stderr.strip().splitlines()[-1:]}"
    version = proc.stdout.strip()
    if not version.startswith("4."):
        return False, f"{python} has transformers {version}, not 4.x"
    return True, version


def v4_available() -> bool:
    return _probe(str(v4_python()))[0]


def v4_version() -> str | None:
    ok, info = _probe(str(v4_python()))
    return info if ok else None


def run_v4(script: str, inputs: dict[str, np.ndarray] | None = None, *, timeout: float = 600) -> dict[str, np.ndarray]:
    """Run ``script`` under Transformers 4; returns the ``outputs`` dict it filled, as numpy arrays.

    Skips the calling test (``pytest.skip``) when no Transformers 4 interpreter is available; raises
    ``RuntimeError`` with the subprocess's stderr when the script fails.
    """
    python = str(v4_python())
    ok, reason = _probe(python)
    if not ok:
        import pytest

        pytest.skip(f"Transformers 4 reference unavailable: {reason}")
    with tempfile.TemporaryDirectory(prefix="fxformers-v4-") as tmp:
        folder = Path(tmp)
        np.savez(folder / "inputs.npz", **{k: np.asarray(v) for k, v in (inputs or {}).items()})
        program = folder / "script.py"
        program.write_text(_PRELUDE + textwrap.dedent(script) + _EPILOGUE)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONPATH", None)  # keep the v5 environment's packages out of the v4 interpreter
        proc = subprocess.run(
            [python, str(program), str(folder)], capture_output=True, text=True, timeout=timeout, env=env,
            cwd=str(folder),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"Transformers 4 script failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        with np.load(folder / "outputs.npz", allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
