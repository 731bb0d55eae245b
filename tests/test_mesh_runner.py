"""Runs every test marked `mesh` (in every test file) in one subprocess with 8 simulated CPU devices.

JAX fixes the device count when it starts, and the rest of the suite runs on one device; so the mesh tests get a
process of their own. Its output is shown when it fails.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mesh_tests_on_8_simulated_devices():
    env = dict(os.environ, FXFORMERS_MESH_TESTS="1", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-m", "mesh", "-x",
           "--no-header", "-rs", str(REPO / "tests")]  # (one -q, from addopts: the summary line is printed)
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1500)
    summary = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    assert proc.returncode == 0, f"mesh tests failed ({summary}):\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    assert "passed" in "".join(summary) and "skipped" not in "".join(summary), proc.stdout[-3000:]
