"""Training: train step, Trainer, checkpoints and exact resume, crash-safe saves, NaN handling, device meshes,
a real fine-tune of all-MiniLM-L6-v2 and its PyTorch round trip."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fxformers.models.bert.configuration import BertConfig
from fxformers.models.bert.modeling import BertForSequenceClassification
from fxformers.optimization import create_optimizer, path_str
from fxformers.training import (
    NonFiniteLossError,
    Trainer,
    TrainingArguments,
    TrainState,
    checkpointing,
    make_train_step,
)

REPO = Path(__file__).resolve().parents[1]

_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(scope="module", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """Many tests below build the same tiny train step in fresh Trainers (and subprocesses): a compilation cache
    shared by them turns every compile after the first into a disk read. Only for this module's tests."""
    from jax._src import compilation_cache

    saved = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    if saved["jax_compilation_cache_dir"]:
        yield saved["jax_compilation_cache_dir"]
        return
    folder = str(tmp_path_factory.mktemp("jax-cache"))
    for name, value in zip(_CACHE_OPTIONS, (folder, 0.0, 0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield folder
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()

# A tiny BERT and a learnable task (label = first token is in the upper half of the vocabulary); dropout on, so
# the dropout keys are part of what resuming must reproduce.
TINY = dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=32, num_labels=2)
TINY_SOURCE = f"""
import numpy as np
from fxformers.models.bert.configuration import BertConfig
from fxformers.models.bert.modeling import BertForSequenceClassification
from fxformers.training import Trainer, TrainingArguments

def tiny_model():
    return BertForSequenceClassification(BertConfig(**{TINY!r}), seed=0)

def tiny_data(n=48, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 64, size=(n, length)).astype(np.int32)
    return {{"input_ids": ids, "attention_mask": np.ones_like(ids), "label": (ids[:, 0] >= 32).astype(np.int64)}}

def tiny_args(out, **kw):
    base = dict(output_dir=str(out), learning_rate=1e-3, per_device_train_batch_size=8, max_steps=6,
                gradient_accumulation_steps=1, warmup_steps=2, weight_decay=0.01, logging_steps=2,
                save_steps=3, seed=7, disable_tqdm=True)
    base.update(kw)
    return TrainingArguments(**base)
"""
exec(TINY_SOURCE)  # the same helpers in this process and in the subprocess workers


def run_worker(code: str, devices: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    if jax.config.jax_compilation_cache_dir:  # share this module's compilation cache
        env.update(JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    script = TINY_SOURCE + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def leaves(tree):
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {path_str(kp): np.asarray(v) for kp, v in flat}


def assert_trees_equal(a, b, atol=0.0):
    a, b = leaves(a), leaves(b)
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert np.array_equal(a[k], b[k]), k
        else:
            np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=atol, err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-step run (accumulation 2, dropout on): the final params every resume must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    trainer = Trainer(tiny_model(), tiny_args(out, gradient_accumulation_steps=2), train_dataset=tiny_data())
    result = trainer.train()
    assert result.global_step == 6
    return trainer


# -- the pure step ------------------------------------------------------------------------------------------------
def test_train_step_is_pure_and_reproducible():
    model = tiny_model()
    tx, schedule = create_optimizer(1e-3, num_training_steps=4)
    batch = {k: v[:8] for k, v in tiny_data().items()}
    batch["labels"] = batch.pop("label")
    step = make_train_step(model, tx, schedule=schedule, donate=False)
    state = TrainState.create(model.params, tx, seed=3)
    a, ma = step(state, batch)
    b, mb = step(state, batch)
    assert_trees_equal(a.params, b.params)
    assert float(ma["loss"]) == float(mb["loss"]) and int(a.step) == 1 and int(a.data_position) == 8
    c, _ = step(state, batch, jax.random.PRNGKey(99))  # another dropout key gives another update
    assert not np.array_equal(leaves(a.params)["classifier/kernel"], leaves(c.params)["classifier/kernel"])
    np.testing.assert_allclose(float(ma["learning_rate"]), 1e-3, rtol=1e-6)  # no warmup: the peak at step 0


def test_bf16_compute_keeps_float32_master_weights():
    model = tiny_model()
    tx, _ = create_optimizer(1e-3, num_training_steps=2)
    batch = {k: v[:8] for k, v in tiny_data().items()}
    batch["labels"] = batch.pop("label")
    step = make_train_step(model, tx, compute_dtype=jnp.bfloat16)
    state, metrics = step(TrainState.create(jax.tree_util.tree_map(jnp.copy, model.params), tx), batch)
    assert all(v.dtype == np.float32 for v in leaves(state.params).values())
    assert np.isfinite(float(metrics["loss"]))


def test_frozen_base_stays_bit_identical(tmp_path):
    model = tiny_model()
    before = leaves(model.params)
    trainer = Trainer(model, tiny_args(tmp_path, max_steps=3, save_strategy="no", frozen_parameters=["bert"]),
                      train_dataset=tiny_data())
    trainer.train()
    after = leaves(trainer.model.params)
    frozen = [k for k in before if k.startswith("bert/")]
    assert len(frozen) > 20
    for k in frozen:
        assert np.array_equal(before[k], after[k]), k
    assert not np.array_equal(before["classifier/kernel"], after["classifier/kernel"])


# -- checkpoints and resuming -----------------------------------------------------------------------------------------
def test_checkpoint_layout_and_rotation(reference):
    out = Path(reference.args.output_dir)
    assert [p.name for p in checkpointing.list_checkpoints(out)] == ["checkpoint-3", "checkpoint-6"]
    saved = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert saved["global_step"] == 6 and saved["data_position"] == 6 * 16
    assert any("loss" in entry for entry in saved["log_history"])
    lines = [json.loads(l) for l in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "loss" in l and "step" in l] == [2, 4, 6]


def test_kill_and_resume_equals_uninterrupted(reference, tmp_path, monkeypatch):
    """Stop right after checkpoint-3 (as a kill would), resume with resume_from_checkpoint=True: the final params
    are bit-identical to the uninterrupted run's."""
    args = tiny_args(tmp_path, gradient_accumulation_steps=2)
    original = Trainer._save_checkpoint

    def save_then_die(self, state, *a, **k):
        path = original(self, state, *a, **k)
        raise KeyboardInterrupt(f"killed after {path.name}")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_model(), args, train_dataset=tiny_data()).train()
    monkeypatch.setattr(Trainer, "_save_checkpoint", original)
    assert checkpointing.latest_checkpoint(tmp_path).name == "checkpoint-3"

    resumed = Trainer(tiny_model(), args, train_dataset=tiny_data())
    result = resumed.train(resume_from_checkpoint=True)
    assert result.global_step == 6
    assert_trees_equal(resumed.model.params, reference.model.params)
    assert_trees_equal(resumed.train_state.opt_state, reference.train_state.opt_state)


def test_killed_mid_save_leaves_previous_checkpoint_resumable(reference, tmp_path):
    """A process killed while writing checkpoint-4 (state written, not yet renamed) leaves checkpoint-2 intact;
    resuming from it reproduces the uninterrupted run."""
    proc = run_worker(f"""
        import os
        from fxformers.training import checkpointing
        real = checkpointing.atomic_write_text
        def dying_write(path, text, *a, **k):
            if ".tmp-checkpoint-4" in str(path) and str(path).endswith("trainer_state.json"):
                os._exit(17)  # SIGKILL-like: no cleanup, no finally blocks
            return real(path, text, *a, **k)
        checkpointing.atomic_write_text = dying_write
        Trainer(tiny_model(), tiny_args({str(tmp_path)!r}, gradient_accumulation_steps=2, save_steps=2),
                train_dataset=tiny_data()).train()
    """)
    assert proc.returncode == 17, proc.stderr[-3000:]
    assert (tmp_path / ".tmp-checkpoint-4" / "state").is_dir()  # the half-written save
    assert not (tmp_path / "checkpoint-4").exists()
    assert checkpointing.latest_checkpoint(tmp_path).name == "checkpoint-2"

    args = tiny_args(tmp_path, gradient_accumulation_steps=2, save_steps=2, save_total_limit=1)
    resumed = Trainer(tiny_model(), args, train_dataset=tiny_data())
    resumed.train(resume_from_checkpoint=True)
    assert_trees_equal(resumed.model.params, reference.model.params)
    # the stale temporary folder is gone and rotation kept only the newest complete checkpoint
    assert sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name) == ["checkpoint-6"]


def test_save_total_limit_never_deletes_the_only_good_checkpoint(tmp_path):
    model = tiny_model()
    tx, _ = create_optimizer(1e-3, num_training_steps=4)
    state = TrainState.create(model.params, tx)
    checkpointing.save_checkpoint(tmp_path, state.replace(step=jnp.asarray(2, jnp.int32)), {"global_step": 2})
    # a newer folder that is not complete (no trainer_state.json) must neither count nor be resumed from
    (tmp_path / "checkpoint-9" / "state").mkdir(parents=True)
    removed = checkpointing.rotate_checkpoints(tmp_path, 0)
    assert removed == [] and checkpointing.latest_checkpoint(tmp_path).name == "checkpoint-2"
    checkpointing.save_checkpoint(tmp_path, state.replace(step=jnp.asarray(4, jnp.int32)), {"global_step": 4},
                                  save_total_limit=1)
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["checkpoint-4"]
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        checkpointing.load_checkpoint(tmp_path / "checkpoint-9", state)
    with pytest.raises(ValueError, match="No valid checkpoint"):
        Trainer(model, tiny_args(tmp_path / "empty"), train_dataset=tiny_data()).train(resume_from_checkpoint=True)


def test_resume_with_a_different_optimizer_is_explained(reference, tmp_path):
    trainer = Trainer(tiny_model(), tiny_args(reference.args.output_dir, frozen_parameters=["bert/embeddings"]),
                      train_dataset=tiny_data())
    with pytest.raises(ValueError, match="different training state"):
        trainer.train(resume_from_checkpoint=str(Path(reference.args.output_dir) / "checkpoint-3"))


# -- non-finite losses ------------------------------------------------------------------------------------------------
def _regression_with_a_nan(tmp_path, policy):
    config = BertConfig(**dict(TINY, num_labels=1))
    data = tiny_data(n=32)
    data["label"] = data["label"].astype(np.float32)
    data["label"][5] = np.nan
    args = tiny_args(tmp_path, max_steps=6, save_strategy="no", nan_inf_policy=policy, logging_steps=1)
    trainer = Trainer(BertForSequenceClassification(config, seed=0), args, train_dataset=data)
    order = trainer._stream_indices(0, 8 * 6, 32).reshape(6, 8)
    bad_steps = [i + 1 for i in range(6) if 5 in order[i]]
    return trainer, bad_steps


def test_nan_loss_stops_with_the_step(tmp_path):
    trainer, bad_steps = _regression_with_a_nan(tmp_path, "stop")
    with pytest.raises(NonFiniteLossError, match=f"step {bad_steps[0]}") as info:
        trainer.train()
    assert info.value.step == bad_steps[0]
    params = leaves(trainer.model.params)
    assert all(np.isfinite(v).all() for v in params.values())


def test_nan_loss_skip_drops_only_that_update(tmp_path):
    trainer, bad_steps = _regression_with_a_nan(tmp_path, "skip")
    result = trainer.train()
    assert result.global_step == 6 and np.isfinite(result.training_loss)
    assert [e["skipped_nonfinite_step"] for e in trainer.log_history if "skipped_nonfinite_step" in e] == bad_steps
    assert all(np.isfinite(v).all() for v in leaves(trainer.model.params).values())


# -- device meshes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fsdp", [False, True])
def test_four_devices_give_the_same_params_as_one(tmp_path, fsdp):
    args = dict(max_steps=4, save_strategy="no", gradient_accumulation_steps=2)
    one = Trainer(tiny_model(), tiny_args(tmp_path / "one", **args), train_dataset=tiny_data())
    one.train()
    proc = run_worker(f"""
        import jax, numpy as np
        from fxformers.convert import flatten
        assert jax.device_count() == 4
        t = Trainer(tiny_model(), tiny_args({str(tmp_path / "four")!r}, per_device_train_batch_size=2, fsdp={fsdp!r},
                    fsdp_config={{"min_num_params": 64}},
                    **{args!r}), train_dataset=tiny_data())
        t.train()
        if {fsdp!r}:
            shardings = {{str(x.sharding.spec) for x in jax.tree_util.tree_leaves(t.train_state.params)}}
            assert any("fsdp" in s for s in shardings), shardings
        np.savez({str(tmp_path / "four.npz")!r}, **{{k: np.asarray(v) for k, v in flatten(jax.device_get(t.model.params)).items()}})
    """, devices=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = dict(np.load(tmp_path / "four.npz"))
    ours = leaves(one.model.params)
    assert four.keys() == ours.keys()
    for k in ours:
        np.testing.assert_allclose(four[k], ours[k], rtol=1e-5, atol=1e-5, err_msg=k)


# -- a real fine-tune -------------------------------------------------------------------------------------------------
POSITIVE = ["great", "wonderful", "excellent", "superb", "delightful", "brilliant", "lovely", "fantastic"]
NEGATIVE = ["terrible", "awful", "horrible", "dreadful", "boring", "disappointing", "dull", "bad"]
SUBJECTS = ["the movie", "this film", "the show", "the story", "the acting", "the ending", "the music", "the plot"]


def sentiment(tokenizer, n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(2))
        text = f"{rng.choice(SUBJECTS)} was {rng.choice(POSITIVE if label else NEGATIVE)}"
        rows.append(dict(tokenizer(text), label=label, text=text))
    return rows


@pytest.fixture(scope="module")
def minilm_finetuned(tmp_path_factory):
    from fxformers.testing_assets import minilm_path
    from fxformers.tokenization import AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    out = tmp_path_factory.mktemp("minilm")
    args = TrainingArguments(output_dir=str(out), learning_rate=1e-4, per_device_train_batch_size=16, max_steps=24,
                             warmup_ratio=0.1, logging_steps=8, save_strategy="no", seed=0, disable_tqdm=True)
    accuracy = lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}
    trainer = Trainer(model, args, train_dataset=sentiment(tokenizer, 192, 0), eval_dataset=sentiment(tokenizer, 64, 1),
                      processing_class=tokenizer, compute_metrics=accuracy)
    before = trainer.evaluate()
    trainer.train()
    return trainer, before, trainer.evaluate()


def test_minilm_finetune_reaches_high_accuracy(minilm_finetuned):
    trainer, before, after = minilm_finetuned
    assert after["eval_accuracy"] >= 0.95, (before, after)
    assert after["eval_loss"] < before["eval_loss"] / 2
    losses = [e["loss"] for e in trainer.log_history if "loss" in e and "eval_loss" not in e]
    assert losses[-1] < losses[0]


def test_saved_model_loads_in_pytorch_with_the_same_predictions(minilm_finetuned, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    trainer, _, _ = minilm_finetuned
    trainer.save_model(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    texts = ["the plot was dull", "this film was brilliant", "the acting was superb", "the ending was awful"]
    tokenizer = trainer.processing_class
    rows = [dict(tokenizer(t), label=0) for t in texts]
    ours = trainer.predict(rows).predictions
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    theirs_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    with torch.no_grad():
        theirs = reference(**theirs_tok(texts, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert list(ours.argmax(-1)) == [0, 1, 1, 0]


# -- config-driven runs ------------------------------------------------------------------------------------------------
def test_fxformers_train_from_yaml_with_overrides(tmp_path, capsys):
    import shutil

    from fxformers import cli
    from fxformers.testing_assets import minilm_path

    model_dir = tmp_path / "tiny"
    BertForSequenceClassification(BertConfig(**dict(TINY, vocab_size=30522)), seed=0).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, model_dir / name)
    rows = ["text,label"] + [f"the film was {w},{lab}" for w, lab in
                             [("great", "pos"), ("awful", "neg"), ("superb", "pos"), ("dull", "neg")] * 4]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"task: text-classification\nmodel_name_or_path: {model_dir}\ntrain_file: train.csv\n"
                      "max_seq_length: 16\ntraining:\n  output_dir: out\n  per_device_train_batch_size: 4\n")
    out = tmp_path / "out"
    code = cli.main(["train", str(config), "--train_file", str(tmp_path / "train.csv"), "--training.max_steps", "2",
                     "--output_dir", str(out), "--save_strategy", "no", "--disable_tqdm", "true"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["epoch"] == 0.5 and np.isfinite(metrics["train_loss"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"} and (out / "model.safetensors").is_file()
