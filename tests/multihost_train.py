"""A tiny-BERT fine-tune on variable-length token sequences, run by tests/test_multihost.py in several layouts
(2 processes x 2 devices through ``fxformers launch``, 1 process x 4 devices, single-task SLURM / MPI jobs).

    python multihost_train.py OUT full              # data parallel, fsdp=True, a resume from step 2, then a model
                                                    # loaded on a (data 2, model 2) mesh
    python multihost_train.py OUT mesh              # only the (data 2, model 2) mesh run
    python multihost_train.py OUT resume CHECKPOINT # continue a data-parallel run from CHECKPOINT

Writes (process 0) OUT/params-{dp,fsdp,resumed,tp}.npz, OUT/predictions-{dp,fsdp,tp}.npy, OUT/model-{dp,fsdp,tp}/
and OUT/info.json. The global batch is 8 whatever the layout, so every layout takes the same steps.
"""

import json
import sys
from pathlib import Path

from fxformers.distributed import initialize_distributed

initialize_distributed()  # before any JAX work: a no-op under `fxformers launch` and in single-task jobs

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fxformers.convert import flatten  # noqa: E402
from fxformers.sharding import create_mesh, gather_to_host  # noqa: E402
from fxformers.models.bert.configuration import BertConfig  # noqa: E402
from fxformers.models.bert.modeling import BertForSequenceClassification  # noqa: E402
from fxformers.training import Trainer, TrainingArguments  # noqa: E402

GLOBAL_BATCH = 8
TINY = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=64, num_labels=2)


def examples(n, seed, short=()):
    """Token sequences of 3..16 tokens; the rows in ``short`` have at most 8 (one padding bucket lower)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ids = rng.integers(1, 64, size=int(rng.integers(3, 9 if i in short else 17))).tolist()
        rows.append({"input_ids": ids, "label": int(ids[0] >= 32)})
    return rows


def train_examples(t):
    """40 examples where the first global batch's first half is short and its second half long: a process that
    padded only its own rows would build a [B, 8] batch while the other builds [B, 16] (the bug this guards)."""
    first = t._stream_indices(0, GLOBAL_BATCH, 40)
    rows = examples(40, 0, short=set(first[: GLOBAL_BATCH // 2].tolist()))
    halves = [max(len(rows[i]["input_ids"]) for i in half) for half in np.split(first, 2)]
    assert halves[0] <= 8 < halves[1], halves
    return rows


def pad_collator(rows):
    """Pad to the longest row of the batch (like DataCollatorWithPadding): 0 ids, a 0/1 mask."""
    longest = max(len(r["input_ids"]) for r in rows)
    ids = np.zeros((len(rows), longest), np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])] = r["input_ids"]
    mask = (np.arange(longest)[None, :] < np.array([len(r["input_ids"]) for r in rows])[:, None]).astype(np.int32)
    return {"input_ids": ids, "attention_mask": mask, "labels": np.array([r["label"] for r in rows], np.int64)}


def trainer(out, model=None, **kw):
    args = TrainingArguments(
        output_dir=str(out), learning_rate=1e-3, per_device_train_batch_size=GLOBAL_BATCH // jax.device_count(),
        per_device_eval_batch_size=GLOBAL_BATCH // jax.device_count(), max_steps=4, warmup_steps=1,
        logging_steps=1, save_steps=2, seed=7, disable_tqdm=True, fsdp_config={"min_num_params": 64}, **kw)
    model = BertForSequenceClassification(BertConfig(**TINY), seed=0) if model is None else model
    t = Trainer(model, args, eval_dataset=examples(13, 1), data_collator=pad_collator)
    t.train_dataset = train_examples(t)
    return t


def record(t, out, name):
    """Write what the test compares; check the trained model runs on every process."""
    logits = gather_to_host(t.model(**{k: v for k, v in pad_collator(examples(3, 2)).items() if k != "labels"}).logits)
    assert logits.shape == (3, 2) and np.isfinite(logits).all()
    predictions = t.predict(examples(13, 1)).predictions  # 13 rows: the last batch is padded
    assert predictions.shape == (13, 2), predictions.shape
    params = {k: gather_to_host(v) for k, v in flatten(t.model.params).items()}  # every process joins the gathers
    if jax.process_index() == 0:
        np.savez(out / f"params-{name}.npz", **params)
        np.save(out / f"predictions-{name}.npy", predictions)


def train_on_mesh(out):
    """The same initial weights loaded straight onto a (data 2, model 2) mesh over every process's devices."""
    init = out / f"init-{jax.process_index()}"  # one folder per process: no process waits for another's
    BertForSequenceClassification(BertConfig(**TINY), seed=0).save_pretrained(init)
    model = BertForSequenceClassification.from_pretrained(init, mesh=create_mesh(data=2, model=2))
    query = flatten(model.params)["bert/encoder/layer_0/attention/query/kernel"]
    assert "model" in str(query.sharding.spec), query.sharding  # split over `model`, not replicated
    assert query.is_fully_addressable == (jax.process_count() == 1)  # and spread over both processes' devices
    t = trainer(out / "run-tp", model=model)
    t.train()
    record(t, out, "tp")
    t.save_model(str(out / "model-tp"))


def main():
    out, mode = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    if mode == "full":
        for name, fsdp in (("dp", False), ("fsdp", True)):
            t = trainer(out / f"run-{name}", fsdp=fsdp)
            t.train()
            record(t, out, name)
            t.save_model(str(out / f"model-{name}"))
        t = trainer(out / "run-resumed")
        t.train(resume_from_checkpoint=str(out / "run-dp" / "checkpoint-2"))
        record(t, out, "resumed")
        train_on_mesh(out)
    elif mode == "mesh":
        train_on_mesh(out)
    elif mode == "resume":
        t = trainer(out / "run-resumed")
        t.train(resume_from_checkpoint=sys.argv[3])
        record(t, out, "resumed")
    else:
        raise SystemExit(f"unknown mode {mode}")
    if jax.process_index() == 0:
        (out / "info.json").write_text(json.dumps({"processes": jax.process_count(), "devices": jax.device_count()}))


if __name__ == "__main__":
    main()
