"""Shared checks for the encoder families added beside BERT (ELECTRA, ALBERT, DeBERTa-v2): one PyTorch reference
per (config, head), one fxformers forward that checks outputs, hidden states, attentions and the loss together,
save round trips into transformers, and the partition-rule checks every family owes."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten

OUTPUT_KEY = {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-12))


def torch_model(arch: str, head: str, config: dict, seed: int = 0):
    cfg = getattr(transformers, arch + "Config")(**config)
    cfg._attn_implementation = "eager"  # so attentions can be returned
    torch.manual_seed(seed)
    model = getattr(transformers, arch + head)(cfg).eval()
    with torch.no_grad():  # no zero biases or unit norms: every weight must land in the right place
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def batch(head: str, vocab: int, pad_id: int, type_vocab_size: int, seed: int = 0) -> dict:
    """A right-padded batch (row 1 is shorter), with two segments where the model has token types."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, vocab, (2, 9))
    mask = np.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = pad_id, 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if type_vocab_size > 1:
        inputs["token_type_ids"] = (np.arange(9)[None, :] >= 5).astype(np.int64).repeat(2, 0)
    if head == "ForMultipleChoice":
        inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}  # [B, C, T]
    return inputs


def labels_for(head: str, inputs: dict, num_labels: int, vocab: int, seed: int = 3) -> dict:
    rng = np.random.RandomState(seed)
    mask = inputs["attention_mask"]
    if head == "ForSequenceClassification":
        return {"labels": rng.randint(0, num_labels, (mask.shape[0],))}
    if head == "ForTokenClassification":
        return {"labels": np.where(mask > 0, rng.randint(0, num_labels, mask.shape), -100)}
    if head == "ForQuestionAnswering":
        return {"start_positions": np.array([1, 20]), "end_positions": np.array([3, 4])}  # 20: out of range, ignored
    if head == "ForMaskedLM":
        return {"labels": np.where(rng.rand(*mask.shape) < 0.4, rng.randint(0, vocab, mask.shape), -100)}
    if head == "ForPreTraining" and "sentence_order_label" not in inputs:
        return {"labels": rng.randint(0, 2, mask.shape)}
    if head == "ForMultipleChoice":
        return {"labels": np.array([1, 0])}
    return {}


def run_torch(model, inputs: dict, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


def assert_matches(fm, tm, inputs: dict, head: str, tol: float = 1e-5):
    """Outputs, hidden states, attentions and (when labels are in ``inputs``) the loss, in one forward each."""
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    key = OUTPUT_KEY.get(head, "prediction_logits" if "prediction_logits" in ref else "logits")
    assert rel_err(out[key], ref[key]) < tol, (head, key, rel_err(out[key], ref[key]))
    if head == "ForQuestionAnswering":
        assert rel_err(out.end_logits, ref.end_logits) < tol
    if head == "ForPreTraining" and getattr(ref, "sop_logits", None) is not None:
        assert rel_err(out.sop_logits, ref.sop_logits) < tol
    assert len(out.hidden_states) == len(ref.hidden_states)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert rel_err(ours, theirs) < tol
    assert len(out.attentions) == len(ref.attentions)
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert rel_err(ours, theirs) < tol
    if getattr(ref, "loss", None) is not None:
        theirs = ref.loss.item()
        assert abs(float(out.loss) - theirs) <= 1e-5 * max(1.0, abs(theirs)), (head, float(out.loss), theirs)


def assert_round_trip(fm, tm, inputs: dict, head: str, arch: str, folder: Path):
    """save_pretrained writes a folder transformers loads with no missing, unexpected or mis-shaped keys."""
    fm.save_pretrained(folder)
    back, info = getattr(transformers, arch + head).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    key = OUTPUT_KEY.get(head, "prediction_logits" if head == "ForPreTraining" and arch == "Albert" else "logits")
    plain = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    assert rel_err(run_torch(back.eval(), plain)[key], run_torch(tm, plain)[key]) < 1e-6


def param_shapes(cls, config) -> dict:
    """{flat param path: shape} of a model class, from jax.eval_shape (nothing is initialised)."""
    model = cls._from_parts(config, None, "float32")
    tree = jax.eval_shape(lambda r: model.module.init(r, **model.dummy_inputs())["params"], jax.random.PRNGKey(0))
    return {p: tuple(v.shape) for p, v in flatten(tree).items()}


def assert_partition_rules(classes: list, configs: list):
    """For each config, the family's one table covers every parameter of every head and every rule matches one."""
    from fxformers.sharding import check_rules

    for config in configs:
        union: dict = {}
        for cls in classes:
            assert cls.partition_rules(config) == classes[0].partition_rules(config), "one rule table per family"
            union.update(param_shapes(cls, config))
        check_rules(classes[0].partition_rules(config), union, allow_unused=False, what=type(config).__name__)


def assert_sharded_equals_unsharded(model, inputs: dict):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from fxformers.sharding import create_mesh, param_shardings

    mesh = create_mesh(data=2, fsdp=2, model=2)
    rules = type(model).partition_rules(model.config)
    sharded = jax.device_put(model.params, param_shardings(rules, model.params, mesh))
    key = "logits" if "logits" in model(**inputs) else "last_hidden_state"
    assert rel_err(model(**inputs, params=sharded)[key], model(**inputs)[key]) < 1e-5
