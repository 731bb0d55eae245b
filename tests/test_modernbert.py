"""ModernBERT parity with transformers: alternating global / windowed attention (windows shorter than the text),
separate rotary bases, GeGLU, optional biases, cls / mean pooling, every head, losses, save round trip."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten

HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
         "ForMultipleChoice"]
VOCAB = 101
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            local_attention=8, global_attn_every_n_layers=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            cls_token_id=1, sep_token_id=2, max_position_embeddings=64)
CONFIGS = {
    "base": dict(),
    "biases-mean": dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True,
                        classifier_pooling="mean", global_rope_theta=5000.0, local_rope_theta=300.0,
                        global_attn_every_n_layers=3, local_attention=6, hidden_activation="gelu_new",
                        tie_word_embeddings=False, decoder_bias=False),
}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def torch_model(head: str, name: str, seed: int = 0, **overrides):
    config = transformers.ModernBertConfig(**{**BASE, **CONFIGS[name], **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return getattr(transformers, "ModernBert" + head)(config).eval()


def batch(seed: int = 0, head: str = ""):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, VOCAB, (2, 20))  # longer than every window
    mask = np.ones_like(ids)
    ids[1, 13:], mask[1, 13:] = 0, 0
    if head == "ForMultipleChoice":  # [B, C, T]; the second choice left-padded
        return {"input_ids": np.stack([ids, ids[::-1]], 1), "attention_mask": np.stack([mask, mask[::-1]], 1)}
    return {"input_ids": ids, "attention_mask": mask}


def run_torch(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


def key(head):
    return {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}.get(head, "logits")


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("head", HEADS)
def test_every_head_matches_pytorch(tmp_path, head, name):
    tm = torch_model(head, name)
    tm.save_pretrained(tmp_path)
    fm = getattr(fxformers, "ModernBert" + head).from_pretrained(tmp_path)
    inputs = batch(head=head)
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    mask = inputs["attention_mask"].reshape(-1, 20).astype(bool)
    real = (lambda a: np.asarray(a)[mask]) if head in ("Model", "ForMaskedLM", "ForTokenClassification") else np.asarray
    assert rel(real(out[key(head)]), real(ref[key(head)])) < 1e-5
    if head == "ForQuestionAnswering":
        assert rel(out.end_logits, ref.end_logits) < 1e-5
    assert len(out.attentions) == len(ref.attentions)
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert rel(ours, theirs) < 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert rel(np.asarray(ours)[mask], np.asarray(theirs)[mask]) < 1e-5


def from_torch(tm, head):
    cls = getattr(fxformers, "ModernBert" + head)
    return cls.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()}, cls.config_class(**tm.config.to_dict()))


def test_losses_match_pytorch():
    rng = np.random.RandomState(3)
    mask = batch()["attention_mask"]
    cases = {
        "ForSequenceClassification": [
            (dict(num_labels=3), {"labels": rng.randint(0, 3, (2,))}),
            (dict(num_labels=1), {"labels": rng.randn(2).astype(np.float32)}),
            (dict(num_labels=3, problem_type="multi_label_classification"), {"labels": rng.randint(0, 2, (2, 3)).astype(np.float32)}),
        ],
        "ForTokenClassification": [(dict(num_labels=4), {"labels": np.where(mask > 0, rng.randint(0, 4, mask.shape), -100)})],
        "ForQuestionAnswering": [({}, {"start_positions": np.array([1, 200]), "end_positions": np.array([3, 4])})],
        "ForMaskedLM": [({}, {"labels": np.where(rng.rand(*mask.shape) < 0.3, rng.randint(0, VOCAB, mask.shape), -100)})],
        "ForMultipleChoice": [({}, {"labels": np.array([1, 0])})],
    }
    for head, variants in cases.items():
        for overrides, labels in variants:
            tm = torch_model(head, "biases-mean", **overrides)
            fm = from_torch(tm, head)
            inputs = {**batch(head=head), **labels}
            ref = run_torch(tm, inputs).loss.item()
            assert abs(float(fm(**inputs).loss) - ref) <= 1e-5 * max(1.0, abs(ref)), (head, overrides)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_pretrained_round_trip_and_both_config_spellings(tmp_path, name):
    for head in HEADS:
        tm = torch_model(head, name, seed=1)
        # the Transformers 5 spelling (layer_types, rope_parameters) as saved, and the Transformers 4 one as given
        fm = getattr(fxformers, "ModernBert" + head).from_pretrained(tm.save_pretrained(tmp_path / "in") or tmp_path / "in")
        legacy = from_torch(tm, head) if name == "base" else None
        fm.save_pretrained(tmp_path / head)
        back, info = getattr(transformers, "ModernBert" + head).from_pretrained(
            tmp_path / head, output_loading_info=True, attn_implementation="eager")  # as tm: fully masked rows agree
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        inputs = batch(head=head)
        ref = run_torch(tm, inputs)[key(head)]
        assert rel(run_torch(back.eval(), inputs)[key(head)], ref) < 1e-5
        if legacy is not None:
            assert rel(legacy(**inputs)[key(head)], ref) < 1e-5


def test_legacy_config_fields():
    config = fxformers.ModernBertConfig(num_hidden_layers=4, global_attn_every_n_layers=3, global_rope_theta=7.0,
                                        local_rope_theta=3.0, local_attention=10)
    assert config.attention_types() == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    assert config.rope_config("full_attention").rope_parameters["rope_theta"] == 7.0
    assert config.rope_config("sliding_attention").rope_parameters["rope_theta"] == 3.0
    assert config.window() == 5


@pytest.mark.mesh
def test_partition_rules_cover_every_head_and_shard_exactly():
    from fxformers.sharding import check_rules, create_mesh, param_shardings

    for name in CONFIGS:  # the rules are built from the config: check each config over every head
        config = fxformers.ModernBertConfig(**{**BASE, **CONFIGS[name]})
        shapes = {}
        for head in HEADS:
            shapes.update({p: s.shape for p, s in getattr(fxformers, "ModernBert" + head)._from_parts(
                config, None, "float32").param_shapes().items()})
        check_rules(fxformers.ModernBertModel.partition_rules(config), shapes, what="ModernBERT", allow_unused=False)
    rules = fxformers.ModernBertModel.partition_rules(fxformers.ModernBertConfig(**BASE))
    if len(jax.devices()) < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 for the sharded comparison")
    model = fxformers.ModernBertForMaskedLM.from_config(fxformers.ModernBertConfig(**BASE))
    sharded = jax.device_put(model.params, param_shardings(rules, model.params, create_mesh(data=2, fsdp=2, model=2)))
    assert rel(model(**batch(), params=sharded).logits, model(**batch()).logits) < 1e-5
