"""Trainer habits of Transformers scripts: printed progress and log dicts, callbacks, EarlyStoppingCallback,
load_best_model_at_end, label smoothing (parity with Transformers' LabelSmoother), report_to, fp16 on CPU,
Seq2SeqTrainer(predict_with_generate)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.training import checkpointing
from fxformers.training.steps import label_smoothed_loss

CONFIG = dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=16)


def tiny_data(n=16):
    x = np.random.RandomState(0).randint(1, 64, (n, 6))
    return {"input_ids": x, "attention_mask": np.ones_like(x), "label": (x[:, 0] >= 32).astype(np.int64)}


@pytest.mark.parametrize("shift", [False, True])
def test_label_smoothing_matches_transformers(shift):
    from transformers.trainer_pt_utils import LabelSmoother

    rng = np.random.RandomState(0)
    logits = rng.randn(3, 7, 11).astype(np.float32)
    labels = rng.randint(0, 11, (3, 7))
    labels[0, :2] = labels[2, 5:] = -100
    expected = LabelSmoother(epsilon=0.1)({"logits": torch.tensor(logits)}, torch.tensor(labels), shift_labels=shift)
    ours = label_smoothed_loss(jnp.asarray(logits), jnp.asarray(labels), 0.1, shift_labels=shift)
    assert float(ours) == pytest.approx(float(expected), rel=1e-6)
    # sequence classification: labels [B], logits [B, C]
    expected = LabelSmoother(epsilon=0.2)({"logits": torch.tensor(logits[:, 0])}, torch.tensor(labels[:, 3]))
    assert float(label_smoothed_loss(jnp.asarray(logits[:, 0]), jnp.asarray(labels[:, 3]), 0.2)) == \
        pytest.approx(float(expected), rel=1e-6)


def test_trainer_prints_calls_back_stops_early_and_loads_the_best(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output_dir, as in Transformers' examples (orbax wants absolute paths)
    events = []

    class Recorder(fxformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            events.append(("begin", state.max_steps))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            events.append(("evaluate", state.global_step, metrics["eval_loss"]))

        def on_save(self, args, state, control, **kwargs):
            events.append(("save", state.global_step))

        def on_train_end(self, args, state, control, **kwargs):
            events.append(("end", state.global_step))

    data = tiny_data()
    # a learning rate far too high: the eval loss rises after the first evaluation, so early stopping fires
    args = fxformers.TrainingArguments(
        output_dir="out", max_steps=12, per_device_train_batch_size=4, learning_rate=1.0, logging_steps=2,
        eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="loss", label_smoothing_factor=0.1, seed=0)
    trainer = fxformers.Trainer(fxformers.BertForSequenceClassification(fxformers.BertConfig(**CONFIG)), args,
                                train_dataset=data, eval_dataset=data,
                                callbacks=[Recorder, fxformers.EarlyStoppingCallback(early_stopping_patience=1)])
    result = trainer.train()
    evals = [e for e in events if e[0] == "evaluate"]
    assert events[0] == ("begin", 12) and events[-1][0] == "end"
    assert result.global_step < 12 and len(evals) >= 2  # stopped early
    best_step, best_loss = min(((s, loss) for _, s, loss in evals), key=lambda e: e[1])
    assert trainer.state.best_metric == pytest.approx(best_loss)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert (tmp_path / "out" / f"checkpoint-{best_step}").is_dir()  # kept despite save_total_limit=1
    assert trainer.evaluate()["eval_loss"] == pytest.approx(best_loss, rel=1e-5)  # the best weights are loaded
    saved = json.loads((tmp_path / "out" / f"checkpoint-{result.global_step}" / "trainer_state.json").read_text())
    assert saved["best_model_checkpoint"] == trainer.state.best_model_checkpoint

    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith("{")]
    assert lines[0].startswith("{'loss': ") and "'grad_norm': " in lines[0] and "'learning_rate': " in lines[0] \
        and "'epoch': " in lines[0]
    assert any(line.startswith("{'eval_loss': ") for line in lines)
    assert any(line.startswith("{'train_runtime': ") and "'train_loss': " in line for line in lines)
    assert "it/s]" in printed.err or "s/it]" in printed.err  # the tqdm bar


def test_report_to_and_fp16_say_what_is_missing():
    model = fxformers.BertForSequenceClassification(fxformers.BertConfig(**CONFIG))
    for name in ("wandb", "mlflow", "tensorboard"):
        try:
            fxformers.Trainer(model, fxformers.TrainingArguments(output_dir="unused", report_to=name))
        except ValueError as err:
            assert "not installed" in str(err) and "pip install" in str(err)
    with pytest.raises(ValueError, match="not supported.*'none'"):
        fxformers.Trainer(model, fxformers.TrainingArguments(output_dir="unused", report_to="comet_ml"))
    if jax.default_backend() == "cpu":
        with pytest.raises(ValueError, match="fp16=True needs a GPU.*bf16=True"):
            fxformers.TrainingArguments(output_dir="unused", fp16=True)
    with pytest.raises(ValueError, match="save and eval strategy to match"):
        fxformers.TrainingArguments(output_dir="unused", load_best_model_at_end=True, eval_strategy="epoch")


def test_seq2seq_trainer_predicts_with_generate(tmp_path):
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=32, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    transformers.BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    model = fxformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "bart")
    x = np.random.RandomState(1).randint(3, 64, (3, 5))
    data = [{"input_ids": row, "attention_mask": np.ones(5, np.int64), "labels": row[::-1].copy()} for row in x]
    args = fxformers.Seq2SeqTrainingArguments(output_dir=str(tmp_path / "out"), predict_with_generate=True,
                                              per_device_eval_batch_size=2, generation_max_length=7)
    out = fxformers.Seq2SeqTrainer(model, args).predict(data)
    expected = np.asarray(model.generate(x, attention_mask=np.ones_like(x), max_length=7))
    width = model.generation_config.with_defaults().max_length
    assert out.predictions.shape == (3, width)  # padded as Transformers pads: to generation_config.max_length
    np.testing.assert_array_equal(out.predictions[:, :expected.shape[1]], expected)
    assert (out.predictions[:, expected.shape[1]:] == 1).all()
    assert np.isfinite(out.metrics["test_loss"])
