"""Saves that must never lose the last good copy: a full disk (an injected ``OSError(ENOSPC)``) at every write of
a model, tokenizer or training-checkpoint save, concurrent saves into one folder, ``save_total_limit`` next to an
older run's checkpoints, temporary files of killed saves, and resuming past a damaged newest checkpoint."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fxformers.checkpoints import CheckpointError, load_state_dict, save_state_dict
from fxformers.checkpoints import atomic, saving
from fxformers.models.bert.configuration import BertConfig
from fxformers.models.bert.modeling import BertModel
from fxformers.optimization import create_optimizer
from fxformers.training import TrainState, checkpointing


class DiskFull:
    """Make the ``fail_at``-th write of a save run out of space half-way (ENOSPC), as a full disk would: the
    safetensors writer and every atomic text write (config.json, tokenizer files, trainer_state.json...)."""

    def __init__(self, monkeypatch, fail_at: int):
        self.fail_at, self.count = fail_at, 0
        real_write_safetensors, real_open = saving.write_safetensors, open

        def write_safetensors(tensors, path, metadata=None):
            self._maybe_fail(path)
            real_write_safetensors(tensors, path, metadata)

        def open_(path, mode="r", *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            if "w" in mode:
                fail = self._next()
                if fail:
                    write = f.write

                    def partial_write(data):
                        write(data[: len(data) // 2])
                        raise OSError(errno.ENOSPC, "No space left on device", str(path))

                    f.write = partial_write
            return f

        monkeypatch.setattr(saving, "write_safetensors", write_safetensors)
        monkeypatch.setattr(atomic, "open", open_, raising=False)

    def _next(self) -> bool:
        self.count += 1
        return self.count - 1 == self.fail_at

    def _maybe_fail(self, path):
        if self._next():
            Path(path).write_bytes(b"\0" * 100)  # a partial file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))


def tiny_bert(hidden: int = 32, seed: int = 0) -> BertModel:
    config = BertConfig(vocab_size=99, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    return BertModel(config, seed=seed)


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def assert_params_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------------------ 9. model saves


@pytest.fixture(scope="module")
def models():
    return tiny_bert(32, seed=0), tiny_bert(48, seed=1)


@pytest.mark.parametrize("max_shard_size", ["5GB", "20KB"])
def test_model_save_disk_full_keeps_the_previous_model(models, tmp_path, monkeypatch, max_shard_size):
    old, new = models  # the new model has another width: a mix of new config and old weights would not load
    old.save_pretrained(tmp_path, max_shard_size=max_shard_size)
    for fail_at in range(100):  # the disk fills at the first write, the second, ... until the save has room
        with monkeypatch.context() as m:
            disk = DiskFull(m, fail_at)
            try:
                new.save_pretrained(tmp_path, max_shard_size=max_shard_size)
            except OSError as err:
                assert err.errno == errno.ENOSPC
            else:
                assert disk.count <= fail_at  # every write happened before the failure point: the save is done
                break
        assert no_temporaries(tmp_path)
        state, _ = load_state_dict(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        assert config["hidden_size"] == 32, f"a full disk at write {fail_at} left the new config"
        for key, value in old.state_dict().items():
            np.testing.assert_array_equal(state[key], value)
    assert fail_at > 1
    reloaded = BertModel.from_pretrained(tmp_path)
    assert reloaded.config.hidden_size == 48
    assert_params_equal(reloaded.params, new.params)


# ------------------------------------------------------------------------------------------ 10. tokenizer saves


def tiny_tokenizer(folder: Path, words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from fxformers import AutoTokenizer

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "pad_token": "[PAD]"}))
    return AutoTokenizer.from_pretrained(folder)


def test_tokenizer_save_disk_full_keeps_the_previous_tokenizer(tmp_path, monkeypatch):
    from fxformers import AutoTokenizer

    old = tiny_tokenizer(tmp_path / "old", ["hello", "world"])
    new = tiny_tokenizer(tmp_path / "new", ["goodbye", "moon", "and", "sun"])
    out = tmp_path / "out"
    old.save_pretrained(out)
    expected_old = old("hello world")["input_ids"]
    for fail_at in range(3):  # tokenizer.json, special_tokens_map.json, tokenizer_config.json
        with monkeypatch.context() as m:
            DiskFull(m, fail_at)
            with pytest.raises(OSError):
                new.save_pretrained(out)
        assert no_temporaries(out)
        reloaded = AutoTokenizer.from_pretrained(out)  # loads: every file is the old or the new one, whole
        assert reloaded("hello world")["input_ids"] == expected_old  # nothing changed
    new.save_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).get_vocab() == new.get_vocab()


def test_tokenizer_save_writes_what_the_backend_writes(tmp_path):
    tok = tiny_tokenizer(tmp_path / "a", ["x", "y"])
    tok.save_pretrained(tmp_path / "b")
    tok._tokenizer.save(str(tmp_path / "direct.json"))
    assert (tmp_path / "b" / "tokenizer.json").read_bytes() == (tmp_path / "direct.json").read_bytes()


# ------------------------------------------------------------------------------------------ 11. concurrent saves


def test_concurrent_saves_into_one_folder_leave_a_loadable_model(tmp_path):
    rng = np.random.default_rng(0)
    small = {f"w{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(6)}
    other = {f"v{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(4)}
    errors = []

    def saver(state, shard_size):
        try:
            for _ in range(6):
                save_state_dict(state, tmp_path, max_shard_size=shard_size)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=saver, args=(small, "40KB")), threading.Thread(target=saver, args=(other, "5GB"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state, _ = load_state_dict(tmp_path)
    assert set(state) in (set(small), set(other))
    expected = small if set(state) == set(small) else other
    for key in expected:
        np.testing.assert_array_equal(state[key], expected[key])
    assert no_temporaries(tmp_path)


def test_concurrent_processes_take_turns(tmp_path):
    """Two processes: one saves sharded, one single-file, at the same time; the folder ends loadable."""
    script = (
        "import sys, numpy as np\n"
        "from fxformers.checkpoints import save_state_dict\n"
        "name, size = sys.argv[2], sys.argv[3]\n"
        "state = {f'{name}{i}': np.full((128, 128), i, np.float32) for i in range(5)}\n"
        "for _ in range(3): save_state_dict(state, sys.argv[1], max_shard_size=size)\n"
    )
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name, size], cwd=root,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
             for name, size in (("a", "100KB"), ("b", "5GB"))]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    state, _ = load_state_dict(tmp_path)
    assert set(state) in ({f"a{i}" for i in range(5)}, {f"b{i}" for i in range(5)})


# ------------------------------------------------------------------------------------------ 12. rotation, temp files


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    root = Path(__file__).resolve().parents[1]
    script = ("import sys, os; from fxformers.checkpoints.atomic import temporary_path\n"
              "p = temporary_path(sys.argv[1] + '/model.safetensors'); open(p, 'wb').write(b'x' * 1000); os._exit(9)")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=root, env={"PYTHONPATH": str(root)})
    leaked = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leaked) == 1
    live = atomic.temporary_path(tmp_path / "model.safetensors")  # a save in progress (this process): kept
    unrelated = tmp_path / ".notes.txt.tmp"
    unrelated.write_text("not ours")
    save_state_dict({"w": np.ones(3, np.float32)}, tmp_path)
    assert not leaked[0].exists() and live.exists() and unrelated.exists()
    live.unlink()


def _state(step: int, tx, params):
    return TrainState.create(params, tx).replace(step=jnp.asarray(step, jnp.int32))


@pytest.fixture(scope="module")
def train_bits():
    model = tiny_bert(32)
    tx, _ = create_optimizer(1e-3, num_training_steps=4)
    return model.params, tx


def test_save_total_limit_keeps_the_checkpoint_just_written(tmp_path, train_bits):
    params, tx = train_bits
    checkpointing.save_checkpoint(tmp_path, _state(500, tx, params), {"global_step": 500})  # an older run's
    checkpointing.save_checkpoint(tmp_path, _state(10, tx, params), {"global_step": 10}, save_total_limit=1)
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["checkpoint-10"]
    checkpointing.save_checkpoint(tmp_path, _state(500, tx, params), {"global_step": 500})
    checkpointing.save_checkpoint(tmp_path, _state(20, tx, params), {"global_step": 20}, save_total_limit=2)
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-500"]


def test_training_checkpoint_disk_full_keeps_the_previous(tmp_path, train_bits, monkeypatch):
    params, tx = train_bits
    first = _state(1, tx, params)
    checkpointing.save_checkpoint(tmp_path, first, {"global_step": 1})
    for fail_at in range(2):  # state_structure.json, trainer_state.json
        with monkeypatch.context() as m:
            DiskFull(m, fail_at)
            with pytest.raises(OSError):
                checkpointing.save_checkpoint(tmp_path, _state(2, tx, params), {"global_step": 2}, save_total_limit=1)
        assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["checkpoint-1"]
        state, saved, folder = checkpointing.load_latest_checkpoint(tmp_path, first)
        assert folder.name == "checkpoint-1" and saved == {"global_step": 1}
    checkpointing.save_checkpoint(tmp_path, _state(2, tx, params), {"global_step": 2}, save_total_limit=1)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]  # the temporary folders are gone too


# ------------------------------------------------------------------------------------------ 13. resume fallback


@pytest.mark.parametrize("damage", ["trainer_state_bytes", "trainer_state_list", "orbax_metadata"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(tmp_path, train_bits, damage, caplog):
    params, tx = train_bits
    for step in (1, 2):
        checkpointing.save_checkpoint(tmp_path, _state(step, tx, params), {"global_step": step})
    newest = tmp_path / "checkpoint-2"
    if damage == "trainer_state_bytes":
        (newest / "trainer_state.json").write_bytes(b"\xff\xfe\x00garbage")
    elif damage == "trainer_state_list":
        (newest / "trainer_state.json").write_text("[1, 2]")
    else:
        for meta in (newest / "state").rglob("*"):
            if meta.is_file() and "metadata" in meta.name.lower():
                meta.write_bytes(b"\x00\xff not metadata")
    with pytest.raises(CheckpointError, match="checkpoint-2"):
        checkpointing.load_checkpoint(newest, _state(0, tx, params))
    with caplog.at_level(logging.WARNING):
        state, saved, folder = checkpointing.load_latest_checkpoint(tmp_path, _state(0, tx, params))
    assert folder.name == "checkpoint-1" and int(state.step) == 1 and saved == {"global_step": 1}
    assert "checkpoint-2" in caplog.text and "damaged" in caplog.text
