"""Functions for ``hostile_helpers.run_isolated`` children; imported there, so the imports below happen before the
memory limit and the timing start."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fxformers.checkpoints  # noqa: F401
from fxformers import AutoTokenizer
from fxformers.tokenization.chat import render


def render_chat_template(template: str) -> str:
    """What ``apply_chat_template(tokenize=False)`` renders for a one-message chat (for ``run_isolated``)."""
    return render(template, [[{"role": "user", "content": "hi"}]], source="the chat template of 'hostile/'")[0]


def load_tokenizer_and_encode(folder: str) -> list:
    """Load a tokenizer folder and encode a text with it (a corrupt normaliser may only fail when used)."""
    return AutoTokenizer.from_pretrained(folder)("Hello wörld ﬁ ①")["input_ids"]


def _mutate(data: bytes, rng) -> bytes:
    """1-6 random edits: overwrite, flip, insert, delete, duplicate a chunk, truncate."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 7))):
        n = len(out)
        kind = int(rng.integers(0, 6)) if n else 2
        pos = int(rng.integers(0, n)) if n else 0
        if kind == 0:
            out[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            out[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:
            out[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        elif kind == 3:
            del out[pos:pos + int(rng.integers(1, 64))]
        elif kind == 4:
            chunk = out[pos:pos + int(rng.integers(1, 64))]
            at = int(rng.integers(0, n))
            out[at:at] = chunk
        else:
            del out[pos:]
    return bytes(out)


def fuzz(kind: str, valid_folder: str, filename: str, seed: int, count: int, seconds: float) -> dict:
    """Load ``count`` seeded mutants of ``valid_folder/filename`` (or until ``seconds`` pass); every outcome must
    be a success or our own error type. Returns counts, the slowest load, and any other exception."""
    import shutil
    import tempfile
    import time

    from fxformers.checkpoints import CheckpointError, load_file
    from fxformers.tokenization import TokenizerError

    rng = np.random.default_rng(seed)
    source = Path(valid_folder)
    valid = (source / filename).read_bytes()
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    shutil.copytree(source, work, dirs_exist_ok=True)
    target = work / filename
    stats = {"loaded": 0, "refused": 0, "raw": [], "slowest": 0.0, "tried": 0}
    deadline = time.monotonic() + seconds
    for i in range(count):
        if time.monotonic() > deadline:
            break
        target.write_bytes(_mutate(valid, rng))
        start = time.perf_counter()
        try:
            if kind == "tokenizer":
                load_tokenizer_and_encode(str(work))
            else:
                load_file(target)
            stats["loaded"] += 1
        except (CheckpointError, TokenizerError) as err:
            if str(work) not in str(err) and str(target) not in str(err):
                stats["raw"].append([i, type(err).__name__, "does not name the file: " + str(err)[:200]])
            stats["refused"] += 1
        except BaseException as err:  # noqa: BLE001 - the point is to report every other exception
            stats["raw"].append([i, type(err).__name__, str(err)[:200]])
        stats["slowest"] = max(stats["slowest"], time.perf_counter() - start)
        stats["tried"] += 1
    shutil.rmtree(work, ignore_errors=True)
    return stats
