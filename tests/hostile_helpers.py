"""Run a loader on a hostile file in a child process under a memory limit (RLIMIT_AS) and a timeout.

The child imports the loader first, then caps its address space at what it uses plus ``extra_mb``, calls the
loader and reports, as JSON: the exception's class names (its MRO), its message, the seconds it took and the
growth of its peak RSS. A hang is a ``TimeoutExpired`` in the parent; a memory blow-up a ``MemoryError`` (or a
killed child) that the test reports as a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import importlib, json, resource, sys, time
spec, calls, extra_mb, preload = json.loads(sys.argv[1])
for extra in preload:
    importlib.import_module(extra)
module, _, name = spec.partition(":")
fn = importlib.import_module(module)
for part in name.split("."):
    fn = getattr(fn, part)
def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
limit = vm_bytes() + extra_mb * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for args in calls:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = {"ok": True, "types": [], "message": ""}
    try:
        out = fn(*args)
        result["summary"] = type(out).__name__
        if isinstance(out, dict):
            result["value"] = out
    except BaseException as err:
        result = {"ok": False, "types": [c.__name__ for c in type(err).__mro__], "message": str(err)[:4000]}
    result["seconds"] = time.perf_counter() - start
    result["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print("RESULT" + json.dumps(result), flush=True)
"""


def run_isolated_each(spec: str, calls: list[tuple], timeout: float = 30.0, extra_mb: int = 1024,
                      preload: tuple[str, ...] = ()) -> list[dict]:
    """Call ``module:function`` (or ``module:Class.method``) once per argument tuple in ``calls`` (JSON-able
    arguments, paths allowed), all in one child under ``extra_mb`` more address space than it has after the
    import (of the function's module and of ``preload``); one result dict per call."""
    env = dict(os.environ, PYTHONPATH=f"{_ROOT}{os.pathsep}{_ROOT / 'tests'}", JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    payload = [spec, [[str(a) if isinstance(a, Path) else a for a in args] for args in calls], extra_mb, list(preload)]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(payload)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=str(_ROOT),
    )
    results = [json.loads(line[len("RESULT"):]) for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == len(calls), f"the child died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return results


def run_isolated(spec: str, *args, timeout: float = 20.0, extra_mb: int = 1024) -> dict:
    """``run_isolated_each`` for one call."""
    return run_isolated_each(spec, [args], timeout=timeout, extra_mb=extra_mb)[0]


def assert_clean_error(result: dict, error: str, *needles: str, seconds: float = 3.0, rss_mb: float = 300) -> None:
    """The call failed with ``error`` (a class name in the exception's MRO) whose message holds ``needles``,
    quickly and without a memory blow-up."""
    assert not result["ok"], f"expected {error}, the call succeeded: {result}"
    assert error in result["types"], f"expected {error}, got {result['types'][0]}: {result['message'][:500]}"
    for needle in needles:
        assert needle in result["message"], f"{needle!r} not in: {result['message'][:1000]}"
    assert result["seconds"] < seconds, result
    assert result["rss_growth_mb"] < rss_mb, result

