"""Marian parity with transformers: shared or separate vocabularies, tied or untied heads, sinusoidal positions,
scale_embedding, final_logits_bias, loss, save round trip, partition rules, and generate() token-exact."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten

V, W = 97, 61  # source and (separate) target vocabularies
SMALL = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=64,
             pad_token_id=V - 1, decoder_start_token_id=V - 1, eos_token_id=0, forced_eos_token_id=0)
CONFIGS = {
    "opus-mt": dict(scale_embedding=True, activation_function="swish"),  # what opus-mt checkpoints carry
    "separate-vocab": dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=W, pad_token_id=W - 1,
                           decoder_start_token_id=W - 1),
    "untied-gelu": dict(tie_word_embeddings=False, scale_embedding=True, d_model=36, encoder_attention_heads=6),
}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def torch_model(name: str, cls=transformers.MarianMTModel, seed: int = 0):
    config = transformers.MarianConfig(**{**SMALL, **CONFIGS[name]})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()
        for p in model.parameters():  # larger weights: varied continuations in generation
            if p.ndim == 2 and p.shape[0] in (V, W):
                p.mul_(6.0)
    return model


def batch(name: str, seed: int = 0):
    c = {**SMALL, **CONFIGS[name]}
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, V - 1, (2, 11))
    ids[:, -1] = 0
    ids[1, 7], ids[1, 8:] = 0, V - 1
    mask = (ids != V - 1).astype(np.int64)
    target = c.get("decoder_vocab_size") or V
    dec = rng.randint(1, target - 1, (2, 6))
    labels = dec.copy()
    labels[0, 4:] = -100
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}, labels


def run_torch(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("marian")
    out = {}
    for name in CONFIGS:
        tm = torch_model(name)
        tm.save_pretrained(root / name)
        out[name] = (root / name, tm)
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_mt_model_matches_pytorch(checkpoints, name):
    folder, tm = checkpoints[name]
    fm = fxformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(fm).__name__ == "MarianMTModel"
    inputs, labels = batch(name)
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    assert rel(out.logits, ref.logits) < 1e-5
    assert rel(out.encoder_last_hidden_state, ref.encoder_last_hidden_state) < 1e-5
    for group in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert len(out[group]) == len(ref[group])
        for ours, theirs in zip(out[group], ref[group]):
            assert rel(ours, theirs) < 1e-5, group
    loss_inputs = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
    ref_loss = run_torch(tm, {**loss_inputs, "labels": labels}).loss.item()
    assert abs(float(fm(**loss_inputs, labels=labels).loss) - ref_loss) <= 1e-5 * max(1.0, ref_loss)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_base_model_and_round_trip(checkpoints, name, tmp_path):
    folder, tm = checkpoints[name]
    inputs, _ = batch(name)
    base = fxformers.MarianModel.from_pretrained(folder)
    ref = run_torch(tm.model, inputs)
    assert rel(base(**inputs).last_hidden_state, ref.last_hidden_state) < 1e-5
    embeds = tm.model.get_encoder().embed_tokens(torch.tensor(inputs["input_ids"])).detach().numpy()
    dec_embeds = tm.model.get_decoder().embed_tokens(torch.tensor(inputs["decoder_input_ids"])).detach().numpy()
    embed_inputs = {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"], "decoder_inputs_embeds": dec_embeds}
    assert rel(base(**embed_inputs).last_hidden_state, run_torch(tm.model, embed_inputs).last_hidden_state) < 1e-5
    for cls, torch_cls, key in ((fxformers.MarianMTModel, transformers.MarianMTModel, "logits"),
                                (fxformers.MarianModel, transformers.MarianModel, "last_hidden_state")):
        cls.from_pretrained(folder).save_pretrained(tmp_path / cls.__name__)
        back, info = torch_cls.from_pretrained(tmp_path / cls.__name__, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        reference = tm if cls is fxformers.MarianMTModel else tm.model
        assert rel(run_torch(back.eval(), inputs)[key], run_torch(reference, inputs)[key]) < 1e-5


GEN_SETTINGS = [
    dict(max_new_tokens=10),
    dict(max_new_tokens=8, num_beams=4, length_penalty=0.5, early_stopping=True, num_return_sequences=2),
    dict(max_new_tokens=8, num_beams=3, no_repeat_ngram_size=2),
    dict(max_new_tokens=8, do_sample=True, top_k=1),
]


@pytest.mark.parametrize("name", ["opus-mt", "separate-vocab"])
@pytest.mark.parametrize("settings", GEN_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_generate_matches_transformers(checkpoints, name, settings):
    folder, tm = checkpoints[name]
    model = fxformers.MarianMTModel.from_pretrained(folder)
    inputs, _ = batch(name, seed=4)
    inputs.pop("decoder_input_ids")
    pad = tm.config.pad_token_id
    with torch.no_grad():
        expected = tm.generate(**{k: torch.tensor(v) for k, v in inputs.items()}, bad_words_ids=[[pad]],
                               **settings).numpy()
    got = np.asarray(model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                    bad_words_ids=[[pad]], **settings))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def param_shapes(cls, config) -> dict:
    model = cls._from_parts(config, None, "float32")
    tree = jax.eval_shape(lambda r: model.module.init(r, **model.dummy_inputs())["params"], jax.random.PRNGKey(0))
    return {p: v.shape for p, v in flatten(tree).items()}


def test_partition_rules_cover_every_class_and_shard_exactly(checkpoints):
    from fxformers.sharding import check_rules, create_mesh, param_shardings

    shapes = {}
    for name in CONFIGS:
        config = fxformers.MarianConfig(**{**SMALL, **CONFIGS[name]})
        for cls in (fxformers.MarianModel, fxformers.MarianMTModel):
            shapes.update(param_shapes(cls, config))
    rules = fxformers.MarianMTModel.partition_rules(fxformers.MarianConfig())
    check_rules(rules, shapes, what="Marian", allow_unused=False)
    if len(jax.devices()) < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 for the sharded comparison")
    from fxformers.sharding import create_mesh

    model = fxformers.MarianMTModel.from_pretrained(checkpoints["separate-vocab"][0])
    sharded = jax.device_put(model.params, param_shardings(rules, model.params, create_mesh(data=2, fsdp=2, model=2)))
    inputs, _ = batch("separate-vocab")
    assert rel(model(**inputs, params=sharded).logits, model(**inputs).logits) < 1e-5
