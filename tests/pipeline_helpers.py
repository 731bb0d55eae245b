"""Shared pieces of the pipeline tests: tiny random checkpoints written by transformers, the reference runner,
and a structural comparison of pipeline results (strings, ints and labels exact; floats within a tolerance)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fxformers.testing_assets import minilm_path

try:
    from reference_v4 import run_v4, v4_available
except ImportError:  # pragma: no cover - run from another folder
    from tests.reference_v4 import run_v4, v4_available

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "MISC"]


def tiny_bert(folder: Path, head: str, seed: int = 0, **config: Any) -> Path:
    """Save a 2-layer random BERT with ``head`` ("BertForSequenceClassification" ...) and the real MiniLM
    (uncased WordPiece) tokenizer into ``folder``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    defaults = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=37, max_position_embeddings=128, initializer_range=0.3)
    if "id2label" in config:  # Transformers 5 would save label2id as null, which Transformers 4 cannot read
        config.setdefault("label2id", {v: k for k, v in config["id2label"].items()})
    cfg = transformers.BertConfig(**{**defaults, **config})
    model = getattr(transformers, head)(cfg).eval()
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    return folder


_REFERENCE = """
import json
cases = json.loads(str(inputs["cases"]))
pipes = {}
results = []

def plain(obj):
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

for case in cases:
    key = json.dumps([case["task"], case["model"], case.get("init", {}), case.get("tokenizer", {})])
    if key not in pipes:
        tok = transformers.AutoTokenizer.from_pretrained(case["model"], **case.get("tokenizer", {}))
        pipes[key] = transformers.pipeline(case["task"], model=case["model"], tokenizer=tok, **case.get("init", {}))
    pipe = pipes[key]
    try:
        out = plain(pipe(*case.get("args", []), **case.get("kwargs", {})))
    except Exception as err:
        out = {"__error__": type(err).__name__ + ": " + str(err)}
    results.append(out)
outputs["json"] = np.array(json.dumps(results))
"""


def reference_results(cases: list[dict]) -> list:
    """Run every case with ``transformers.pipeline`` under Transformers 4 (``.venv4``, via run_v4); without a
    Transformers 4 interpreter, cases marked ``"v5_ok": True`` run in-process on the installed Transformers and
    the others skip. Cases marked ``"v5_only": True`` (families whose reference behaviour is Transformers 5's, e.g.
    models that ignore token_type_ids) always run on the installed Transformers."""
    payload = {"cases": np.array(json.dumps(cases))}
    v5_only = all(case.get("v5_only") for case in cases)
    if v4_available() and not v5_only:
        return json.loads(str(run_v4(_REFERENCE, payload)["json"]))
    if not all(case.get("v5_ok") or case.get("v5_only") for case in cases):
        pytest.skip("Transformers 4 (.venv4) is not available for these reference cases")
    import torch
    import transformers

    namespace = {"inputs": payload, "outputs": {}, "np": np, "torch": torch, "transformers": transformers}
    exec(textwrap.dedent(_REFERENCE), namespace)
    return json.loads(str(namespace["outputs"]["json"]))


_PIPES: dict[str, Any] = {}


def cached_pipeline(task: str, model: str, tokenizer: dict | None = None, **init: Any):
    """fxformers.pipeline(task, model, ...), built once per arguments: its compiled shapes are reused."""
    from fxformers.pipelines import pipeline
    from fxformers.tokenization import AutoTokenizer

    key = json.dumps([task, model, init, tokenizer or {}], sort_keys=True)
    if key not in _PIPES:
        tok = AutoTokenizer.from_pretrained(model, **(tokenizer or {}))
        _PIPES[key] = pipeline(task, model=model, tokenizer=tok, **init)
    return _PIPES[key]


def run_case(case: dict) -> Any:
    """The same case through fxformers.pipeline."""
    pipe = cached_pipeline(case["task"], case["model"], case.get("tokenizer"), **case.get("init", {}))
    return pipe(*case.get("args", []), **case.get("kwargs", {}))


def plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def assert_same(ours: Any, ref: Any, atol: float = 1e-4, path: str = "result") -> None:
    """Same structure (dict keys, list lengths, single vs list), equal strings/ints/bools, floats within atol."""
    ours = plain(ours)
    if isinstance(ref, dict):
        assert isinstance(ours, dict), f"{path}: expected a dict, got {type(ours).__name__}: {ours!r}"
        assert list(ours) == list(ref), f"{path}: keys {list(ours)} != reference {list(ref)}"
        for k in ref:
            assert_same(ours[k], ref[k], atol, f"{path}[{k!r}]")
    elif isinstance(ref, list):
        assert isinstance(ours, list), f"{path}: expected a list, got {type(ours).__name__}: {ours!r}"
        assert len(ours) == len(ref), f"{path}: {len(ours)} items != reference {len(ref)}\nours={ours}\nref={ref}"
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, atol, f"{path}[{i}]")
    elif isinstance(ref, float):
        assert isinstance(ours, (float, int)) and not isinstance(ours, bool), f"{path}: {ours!r} is not a number"
        assert abs(ours - ref) <= atol, f"{path}: {ours} != reference {ref}"
    else:
        assert ours == ref and type(ours) is type(ref), f"{path}: {ours!r} != reference {ref!r}"


def assert_all_cases_match(cases: dict[str, dict]) -> None:
    """Run every case through fxformers and transformers (one reference subprocess) and report every mismatch."""
    names = list(cases)
    references = dict(zip(names, reference_results([cases[n] for n in names])))
    failures = []
    for name in names:
        ref = references[name]
        try:
            assert not (isinstance(ref, dict) and "__error__" in ref), f"the reference failed: {ref}"
            assert_same(run_case(cases[name]), ref)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    assert not failures, f"{len(failures)} of {len(names)} cases differ:\n" + "\n".join(failures)
