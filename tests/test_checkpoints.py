"""Checkpoint reading/writing against PyTorch transformers: every format, float32/float16/bfloat16, bit-exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fxformers.checkpoints import (  # noqa: E402
    CheckpointError,
    CheckpointNotFoundError,
    atomic_write_bytes,
    atomic_write_text,
    flax_to_pytorch,
    load_file,
    load_state_dict,
    parse_size,
    save_state_dict,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FORMATS = ["safetensors", "safetensors-sharded", "bin", "bin-sharded", "bin-legacy"]
EXPECTED_FILE = {
    "safetensors": "model.safetensors",
    "safetensors-sharded": "model.safetensors.index.json",
    "bin": "pytorch_model.bin",
    "bin-sharded": "pytorch_model.bin.index.json",
    "bin-legacy": "pytorch_model.bin",
}


def tiny_bert_config():
    return transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )


def to_numpy(t: "torch.Tensor") -> np.ndarray:
    """A torch tensor as numpy, bfloat16 included (through its bits)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def assert_bit_equal(actual: np.ndarray, expected: np.ndarray, key: str) -> None:
    assert actual.dtype == expected.dtype, (key, actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    assert actual.tobytes() == np.ascontiguousarray(expected).tobytes(), key


def save_torch_sharded(state_dict, folder: Path, n_shards: int = 3) -> None:
    """pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json, as Transformers 4 wrote them."""
    keys = list(state_dict)
    chunks = [keys[i::n_shards] for i in range(n_shards)]
    weight_map = {}
    for i, chunk in enumerate(chunks):
        name = f"pytorch_model-{i + 1:05d}-of-{n_shards:05d}.bin"
        torch.save({k: state_dict[k] for k in chunk}, folder / name)
        weight_map.update({k: name for k in chunk})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))


@pytest.fixture(scope="session")
def bert_checkpoints(tmp_path_factory):
    """{(dtype, format): (folder, torch state dict of the model)} for a tiny random BertForMaskedLM."""
    root = tmp_path_factory.mktemp("bert")
    out = {}
    for dtype_name, dtype in DTYPES.items():
        torch.manual_seed(0)
        model = transformers.BertForMaskedLM(tiny_bert_config()).eval().to(dtype)
        state = model.state_dict()
        for fmt in FORMATS:
            folder = root / f"{dtype_name}-{fmt}"
            folder.mkdir()
            if fmt == "safetensors":
                model.save_pretrained(folder)
            elif fmt == "safetensors-sharded":
                model.save_pretrained(folder, max_shard_size="20KB")
            elif fmt == "bin":
                model.config.save_pretrained(folder)
                torch.save(state, folder / "pytorch_model.bin")  # tied weights share a storage here
            elif fmt == "bin-legacy":  # torch < 1.6 format, still on many old hub repositories
                model.config.save_pretrained(folder)
                torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
            else:
                model.config.save_pretrained(folder)
                save_torch_sharded(state, folder)
            out[dtype_name, fmt] = (folder, state)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_load_matches_torch_bit_exactly(bert_checkpoints, dtype_name, fmt):
    folder, torch_state = bert_checkpoints[dtype_name, fmt]
    state, source = load_state_dict(folder)
    assert Path(source) == folder / EXPECTED_FILE[fmt]
    if fmt.startswith("safetensors"):
        from safetensors.torch import load_file as st_load

        files = [folder / "model.safetensors"] if fmt == "safetensors" else sorted(folder.glob("model-*.safetensors"))
        reference_keys = set().union(*(st_load(f).keys() for f in files))
    else:
        reference_keys = set(torch_state)
    assert set(state) == reference_keys
    # tied weights (decoder <- word embeddings) are left out by save_pretrained, present in torch.save files
    assert set(torch_state) - set(state) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    for key, value in state.items():
        assert_bit_equal(value, to_numpy(torch_state[key]), key)
        assert value.flags.writeable


def test_sharded_safetensors_really_sharded(bert_checkpoints):
    folder, _ = bert_checkpoints["float32", "safetensors-sharded"]
    assert len(list(folder.glob("model-*-of-*.safetensors"))) > 1


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("max_shard_size", ["5GB", "10KB"])
def test_save_loads_in_transformers(bert_checkpoints, tmp_path, dtype_name, max_shard_size):
    folder, torch_state = bert_checkpoints[dtype_name, "bin"]
    state, _ = load_state_dict(folder)
    written = save_state_dict(state, tmp_path, max_shard_size=max_shard_size)
    tiny_bert_config().save_pretrained(tmp_path)
    if max_shard_size == "10KB":
        assert len(written) > 2 and (tmp_path / "model.safetensors.index.json").is_file()
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(a.nbytes for a in state.values())
        assert set(index["weight_map"]) == set(state)
        assert not (tmp_path / "model.safetensors").exists()
    else:
        assert written == [tmp_path / "model.safetensors"]
    model, info = transformers.BertForMaskedLM.from_pretrained(
        tmp_path, output_loading_info=True, dtype=DTYPES[dtype_name]
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, torch_state[key]), key
    # and back through our own reader
    again, _ = load_state_dict(tmp_path)
    for key, value in state.items():
        assert_bit_equal(again[key], value, key)


def test_save_accepts_jax_arrays_and_metadata(tmp_path):
    import jax.numpy as jnp

    state = {"a": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3), "b": np.ones(3, np.int64)}
    save_state_dict(state, tmp_path, metadata={"format": "pt", "note": "x"})
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}
        assert f.get_tensor("a").dtype == torch.bfloat16
    loaded = load_file(tmp_path / "model.safetensors")
    assert loaded["a"].dtype == ml_dtypes.bfloat16 and loaded["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_search_order_and_from_flax(bert_checkpoints, tmp_path):
    folder, torch_state = bert_checkpoints["float32", "bin"]
    (tmp_path / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes())
    state, source = load_state_dict(tmp_path)
    assert Path(source).name == "pytorch_model.bin"
    save_state_dict({"only": np.zeros(2, np.float32)}, tmp_path)
    state, source = load_state_dict(tmp_path, from_pt=True)
    assert Path(source).name == "model.safetensors" and list(state) == ["only"]
    write_flax_checkpoint({"flaxonly.kernel": np.ones((2, 3), np.float32)}, tmp_path)
    state, source = load_state_dict(tmp_path, from_flax=True)
    assert Path(source).name == "flax_model.msgpack" and list(state) == ["flaxonly.weight"]
    # a single file can be named directly
    state, source = load_state_dict(tmp_path / "pytorch_model.bin")
    assert set(state) == set(torch_state)


def test_no_weights_lists_names_and_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointNotFoundError) as err:
        load_state_dict(tmp_path)
    message = str(err.value)
    for name in ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "flax_model.msgpack"]:
        assert name in message
    assert str(tmp_path) in message
    assert isinstance(err.value, CheckpointError) and isinstance(err.value, FileNotFoundError)


def test_unknown_hub_name_offline_fails_fast(tmp_path, monkeypatch):
    from fxformers.hub import ModelNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="org/absent"):
        load_state_dict("org/absent", cache_dir=tmp_path)


def test_hub_cache_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    save_state_dict({"w": np.arange(4, dtype=np.float32), "v": np.ones(4, np.float32)}, snapshot, max_shard_size=20)
    state, source = load_state_dict("org/tiny", cache_dir=tmp_path, local_files_only=True)
    assert Path(source) == snapshot / "model.safetensors.index.json"
    assert state["w"].tolist() == [0, 1, 2, 3] and state["v"].tolist() == [1, 1, 1, 1]


# ----------------------------------------------------------------------------------------------- Flax msgpack


def pytorch_to_flax_flat(model: "torch.nn.Module") -> dict[str, np.ndarray]:
    """Test-side inverse of the generic rule: torch state dict -> {'a/b/kernel': array} by module type."""
    import torch.nn as nn

    kinds = {name: type(module) for name, module in model.named_modules()}
    flat = {}
    for key, tensor in model.state_dict().items():
        module_name, _, leaf = key.rpartition(".")
        kind = kinds.get(module_name)
        value = to_numpy(tensor)
        path = module_name.split(".") if module_name else []
        if leaf == "weight" and kind is nn.Linear:
            path, value = path + ["kernel"], value.T
        elif leaf == "weight" and kind is nn.Conv2d:
            path, value = path + ["kernel"], value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and kind is nn.Conv1d:
            path, value = path + ["kernel"], value.transpose(2, 1, 0)
        elif leaf == "weight" and kind is nn.Embedding:
            path = path + ["embedding"]
        elif leaf == "weight" and kind in (nn.LayerNorm, nn.BatchNorm2d):
            path = path + ["scale"]
        elif leaf == "running_mean":
            path = path + ["mean"]
        elif leaf == "running_var":
            path = path + ["var"]
        elif leaf == "num_batches_tracked":
            continue
        else:
            path = path + [leaf]
        flat["/".join(path)] = np.ascontiguousarray(value)
    return flat


def nest(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def write_flax_checkpoint(flat, folder: Path, n_shards: int = 1) -> None:
    """flax_model.msgpack, or flax_model-0000i-of-0000n.msgpack + index, as Transformers 4 wrote them."""
    from flax.serialization import msgpack_serialize

    flat = {k.replace(".", "/"): v for k, v in flat.items()}
    if n_shards == 1:
        (folder / "flax_model.msgpack").write_bytes(msgpack_serialize(nest(flat)))
        return
    keys = list(flat)
    weight_map = {}
    for i in range(n_shards):
        name = f"flax_model-{i + 1:05d}-of-{n_shards:05d}.msgpack"
        part = {k: flat[k] for k in keys[i::n_shards]}
        (folder / name).write_bytes(msgpack_serialize(nest(part)))
        weight_map.update({k: name for k in part})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "flax_model.msgpack.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("n_shards", [1, 3])
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_flax_msgpack_recovers_torch_state(tmp_path, n_shards, dtype_name):
    torch.manual_seed(0)
    model = transformers.BertModel(tiny_bert_config()).eval().to(DTYPES[dtype_name])
    flat = pytorch_to_flax_flat(model)
    assert "encoder/layer/0/attention/self/query/kernel" in flat
    write_flax_checkpoint(flat, tmp_path, n_shards)
    state, source = load_state_dict(tmp_path)
    assert Path(source).name == ("flax_model.msgpack" if n_shards == 1 else "flax_model.msgpack.index.json")
    torch_state = model.state_dict()
    assert set(state) == set(torch_state)
    for key, value in state.items():
        assert_bit_equal(value, to_numpy(torch_state[key]), key)
        assert value.flags.writeable


def test_flax_generic_rule_conv_and_batch_stats():
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, (2, 3)), nn.BatchNorm2d(4), nn.Conv1d(4, 5, 3), nn.Linear(5, 2))
    model[1].running_mean.uniform_()
    model[1].running_var.uniform_()
    flat = pytorch_to_flax_flat(model)
    params = {k: v for k, v in flat.items() if not k.endswith(("/mean", "/var"))}
    stats = {k: v for k, v in flat.items() if k.endswith(("/mean", "/var"))}
    tree = {("params",) + tuple(k.split("/")): v for k, v in params.items()}
    tree.update({("batch_stats",) + tuple(k.split("/")): v for k, v in stats.items()})
    state = flax_to_pytorch(tree)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(state) == set(expected)
    for key, value in state.items():
        assert_bit_equal(value, to_numpy(expected[key]), key)


# ----------------------------------------------------------------------------------------------- sizes, atomic


@pytest.mark.parametrize(
    "size, expected",
    [(1234, 1234), ("5GB", 5 * 10**9), ("200MB", 200 * 10**6), ("10KB", 10**4), ("1GiB", 2**30),
     ("3MiB", 3 * 2**20), ("2KiB", 2048), ("5Gb", 5 * 10**9 // 8), ("100", 100), ("1.5GB", 1_500_000_000)],
)
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("bad", ["5 parsecs", "GB", "", -1, 0, None])
def test_parse_size_rejects(bad):
    with pytest.raises((ValueError, TypeError)):
        parse_size(bad)


def test_atomic_write_helpers(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    mode = target.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_failure_keeps_old(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


# ----------------------------------------------------------------------------------------------- crash-safe saving


def _state(seed: int, n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i}.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(n)}


def _assert_same(a, b):
    assert set(a) == set(b)
    for key in a:
        assert_bit_equal(a[key], b[key], key)


@pytest.mark.parametrize("old_shard, new_shard", [("5GB", "5GB"), ("2KB", "2KB"), ("5GB", "2KB"), ("2KB", "5GB")])
def test_save_that_fails_midway_keeps_previous_checkpoint(tmp_path, monkeypatch, old_shard, new_shard):
    from fxformers.checkpoints import saving

    old = _state(0)
    save_state_dict(old, tmp_path, max_shard_size=old_shard)
    before = sorted(p.name for p in tmp_path.iterdir())
    calls = []
    real_write = saving.write_safetensors

    def failing_write(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2 or new_shard == "5GB":
            real_write(tensors, path, metadata)
            Path(path).write_bytes(Path(path).read_bytes()[:10])  # a half-written file ...
            raise OSError(28, "No space left on device")  # ... then the disk is full
        real_write(tensors, path, metadata)

    monkeypatch.setattr(saving, "write_safetensors", failing_write)
    with pytest.raises(OSError, match="No space left"):
        save_state_dict(_state(1), tmp_path, max_shard_size=new_shard)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary files left behind
    _assert_same(load_state_dict(tmp_path)[0], old)
    monkeypatch.undo()
    new = _state(2, n=5)
    save_state_dict(new, tmp_path, max_shard_size=new_shard)
    _assert_same(load_state_dict(tmp_path)[0], new)
    names = sorted(p.name for p in tmp_path.iterdir())
    if new_shard == "5GB":
        assert names == ["model.safetensors"]  # stale shards and index removed
    else:
        assert "model.safetensors" not in names
        count = len(json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"])
        assert count == 5
        assert all(n.endswith("-of-%05d.safetensors" % (len(names) - 1)) for n in names if n.startswith("model-"))


def test_process_killed_mid_save_keeps_previous_checkpoint(tmp_path):
    old = _state(0)
    save_state_dict(old, tmp_path, max_shard_size="2KB")
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from fxformers.checkpoints import saving, save_state_dict
        real = saving.write_safetensors
        count = [0]
        def dying_write(tensors, path, metadata=None):
            count[0] += 1
            real(tensors, path, metadata)
            if count[0] == 3:
                os._exit(9)  # killed: no cleanup, no exception handlers
        saving.write_safetensors = dying_write
        rng = np.random.default_rng(5)
        save_state_dict({{f"layer.{{i}}.weight": rng.standard_normal((16, 16)).astype(np.float32)
                          for i in range(6)}}, {str(tmp_path)!r}, max_shard_size="2KB")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers and all(n.endswith(".tmp") for n in leftovers)  # hidden temporaries, nothing replaced
    _assert_same(load_state_dict(tmp_path)[0], old)
