"""A seeded mutation fuzzer over valid weight and tokenizer files: every mutant either loads or is refused with
our own error (CheckpointError / TokenizerError naming the file) - never another exception, a hang or a memory
blow-up. Each format runs in a child under a memory limit, for a bounded time (the whole file: ~20-30 s)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from hostile_helpers import run_isolated_each

SECONDS_PER_FORMAT = 2.0


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.standard_normal((6, 4)).astype(np.float32), "a.bias": np.arange(4, dtype=np.int64),
             "b": rng.standard_normal(5).astype(np.float16)}
    from fxformers.checkpoints import save_state_dict

    save_state_dict(state, root / "st")
    torch = pytest.importorskip("torch")
    (root / "bin").mkdir()
    w = torch.randn(4, 3)
    torch.save({"w": w, "tied": w, "view": w[1:, 1:], "b16": torch.randn(5).bfloat16(), "i": torch.arange(3)},
               root / "bin" / "pytorch_model.bin")
    import msgpack

    def ext(array):  # flax's ndarray msgpack extension
        return msgpack.ExtType(1, msgpack.packb((array.shape, array.dtype.name, array.tobytes()), use_bin_type=True))

    (root / "msgpack").mkdir()
    tree = {"params": {"dense": {"kernel": ext(state["a.weight"]), "bias": ext(state["a.weight"][0])}}}
    (root / "msgpack" / "flax_model.msgpack").write_bytes(msgpack.packb(tree, use_bin_type=True))
    spm = pytest.importorskip("sentencepiece")
    (root / "corpus.txt").write_text("\n".join(["Hello world ﬁ café ① Ｔｅｓｔ wörld the quick brown fox"] * 40))
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "m"), vocab_size=40,
                                   minloglevel=2, hard_vocab_limit=False, num_threads=1)
    (root / "spm").mkdir()
    (root / "spm" / "spiece.model").write_bytes((root / "m.model").read_bytes())
    (root / "spm" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    from fxformers import AutoTokenizer

    AutoTokenizer.from_pretrained(root / "spm").save_pretrained(root / "json")  # tokenizer.json with a charsmap
    return root


CASES = {  # format: (kind, folder, file)
    "safetensors": ("weights", "st", "model.safetensors"),
    "pytorch_bin": ("weights", "bin", "pytorch_model.bin"),
    "flax_msgpack": ("weights", "msgpack", "flax_model.msgpack"),
    "spiece_model": ("tokenizer", "spm", "spiece.model"),
    "tokenizer_json": ("tokenizer", "json", "tokenizer.json"),
}


def test_mutants_load_or_fail_cleanly(valid_files):
    calls = [(kind, str(valid_files / folder), filename, 1234, 10_000, SECONDS_PER_FORMAT)
             for kind, folder, filename in CASES.values()]
    results = run_isolated_each("hostile_targets:fuzz", calls, timeout=120, extra_mb=1024,
                                preload=("flax.serialization",))
    for name, result in zip(CASES, results):
        assert result["ok"], (name, result)
        stats = result["value"]
        assert not stats["raw"], f"{name}: {len(stats['raw'])} mutants gave other exceptions, e.g. {stats['raw'][:5]}"
        assert stats["tried"] >= 20 and stats["refused"] > 0, (name, stats)
        assert stats["slowest"] < 2.0, (name, stats)
        assert result["rss_growth_mb"] < 500, (name, result)
