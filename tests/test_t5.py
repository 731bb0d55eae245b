"""T5 / T5 v1.1 / mT5 parity with transformers: every checkpoint format, both head styles, loss, round trip, generate().

Transformers 5 reinterprets ``tie_word_embeddings`` for T5 (see fxformers/models/t5/configuration.py), and every hub
T5 checkpoint was written by Transformers 4, so the untied (v1.1 / flan / mT5) style is built and checked under
Transformers 4 as well (tests/reference_v4.py; skipped with the reason when .venv4 is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fxformers.auto import AutoModel, AutoModelForSeq2SeqLM, AutoModelForTextEncoding  # noqa: E402
from fxformers.models.t5.modeling import T5EncoderModel, T5ForConditionalGeneration, T5Model  # noqa: E402
from reference_v4 import run_v4  # noqa: E402

TOL = 1e-5
SMALL = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0,
             relative_attention_num_buckets=8, relative_attention_max_distance=20)
STYLES = {
    "v1-relu-tied": dict(feed_forward_proj="relu"),
    "v1.1-gated-gelu": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3),
    "gated-silu": dict(feed_forward_proj="gated-silu", num_heads=2, d_kv=6, layer_norm_epsilon=1e-3),
    "gelu_new-ungated": dict(feed_forward_proj="gelu_new", num_layers=3, num_decoder_layers=1),
}
FORMATS = ["safetensors", "sharded", "bin"]


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def save(model, folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    elif fmt == "sharded":
        model.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").exists()
    else:  # a Transformers-4-style pytorch_model.bin, tied copies included
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(2, 99, (2, 11))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    dec = rng.randint(2, 99, (2, 6))
    labels = dec.copy()
    labels[0, 4:] = -100
    return ids, mask, dec, labels


def torch_out(model, **kw):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in kw.items()}, output_hidden_states=True)


@pytest.fixture(scope="session")
def t5_checkpoints(tmp_path_factory):
    """{(style, format): (folder, torch model)} built with Transformers 5 (every format for two styles)."""
    root = tmp_path_factory.mktemp("t5")
    out = {}
    for style, kw in STYLES.items():
        torch.manual_seed(0)
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(**{**SMALL, **kw})).eval()
        for fmt in FORMATS if style in ("v1-relu-tied", "v1.1-gated-gelu") else FORMATS[:1]:
            out[style, fmt] = (save(model, root / f"{style}-{fmt}", fmt), model)
    return out


@pytest.mark.parametrize("style", list(STYLES))
def test_forward_parity(t5_checkpoints, style):
    folder, ref = t5_checkpoints[style, "safetensors"]
    model = T5ForConditionalGeneration.from_pretrained(folder)
    ids, mask, _, labels = inputs()
    expected = torch_out(ref, input_ids=ids, attention_mask=mask, labels=labels)
    got = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert rel(got.logits, expected.logits) < TOL
    assert rel(got.encoder_last_hidden_state, expected.encoder_last_hidden_state) < TOL
    assert abs(float(got.loss) - float(expected.loss)) < TOL * float(expected.loss)
    for name in ("encoder_hidden_states", "decoder_hidden_states"):
        ours, theirs = getattr(got, name), getattr(expected, name)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert rel(a, b) < TOL, name


@pytest.mark.parametrize("fmt", ["sharded", "bin"])
@pytest.mark.parametrize("style", ["v1-relu-tied", "v1.1-gated-gelu"])
def test_formats_load_the_same_weights(t5_checkpoints, style, fmt):
    """Sharded safetensors and pytorch_model.bin (with tied copies stored) give exactly the safetensors weights."""
    import jax

    reference = T5ForConditionalGeneration.from_pretrained(t5_checkpoints[style, "safetensors"][0]).params
    params = T5ForConditionalGeneration.from_pretrained(t5_checkpoints[style, fmt][0]).params
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_attentions_and_decoder_inputs(t5_checkpoints):
    folder, ref = t5_checkpoints["v1-relu-tied", "safetensors"]
    model = T5ForConditionalGeneration.from_pretrained(folder)
    ids, mask, dec, _ = inputs()
    dec_mask = np.ones_like(dec)
    dec_mask[1, 4:] = 0
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(dec),
                       decoder_attention_mask=torch.tensor(dec_mask), output_attentions=True)
    got = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
                output_attentions=True)
    assert rel(got.logits, expected.logits) < TOL
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        for a, b in zip(getattr(got, name), getattr(expected, name)):
            assert rel(a, b) < TOL, name


def test_labels_shift_and_ignore(t5_checkpoints):
    folder, _ = t5_checkpoints["v1-relu-tied", "safetensors"]
    model = T5ForConditionalGeneration.from_pretrained(folder)
    ids, mask, _, labels = inputs()
    shifted = np.concatenate([np.zeros((2, 1), labels.dtype), labels[:, :-1]], axis=1)
    shifted[shifted == -100] = 0
    a = model(input_ids=ids, attention_mask=mask, labels=labels)
    b = model(input_ids=ids, attention_mask=mask, decoder_input_ids=shifted)
    np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), rtol=0, atol=0)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=ids)


def test_base_and_encoder_models(t5_checkpoints):
    folder, ref = t5_checkpoints["v1.1-gated-gelu", "bin"]
    ids, mask, dec, _ = inputs()
    base = T5Model.from_pretrained(folder)
    torch_base = transformers.T5Model.from_pretrained(folder).eval()
    expected = torch_out(torch_base, input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    got = base(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    assert rel(got.last_hidden_state, expected.last_hidden_state) < TOL
    encoder = T5EncoderModel.from_pretrained(folder)  # decoder and head weights are skipped
    torch_encoder = transformers.T5EncoderModel.from_pretrained(folder).eval()
    expected = torch_out(torch_encoder, input_ids=ids, attention_mask=mask)
    got = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert rel(got.last_hidden_state, expected.last_hidden_state) < TOL
    assert len(got.hidden_states) == len(expected.hidden_states)
    assert type(AutoModel.from_pretrained(folder)).__name__ == "T5Model"
    assert type(AutoModelForTextEncoding.from_pretrained(folder)).__name__ == "T5EncoderModel"


@pytest.mark.parametrize("style", ["v1-relu-tied", "v1.1-gated-gelu"])
def test_save_pretrained_round_trip(t5_checkpoints, style, tmp_path):
    folder, ref = t5_checkpoints[style, "safetensors"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    model.save_pretrained(tmp_path)
    reloaded, info = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask, _, labels = inputs()
    a = torch_out(reloaded.eval(), input_ids=ids, attention_mask=mask, labels=labels).logits
    b = torch_out(ref, input_ids=ids, attention_mask=mask, labels=labels).logits
    assert rel(a, b) < TOL


GEN_SETTINGS = [
    dict(max_new_tokens=12),
    dict(max_new_tokens=9, num_beams=4, length_penalty=0.5, early_stopping=True, no_repeat_ngram_size=2,
         num_return_sequences=2),
    dict(max_new_tokens=9, num_beams=2, length_penalty=2.0, early_stopping=False),
    dict(max_new_tokens=8, min_new_tokens=5, forced_bos_token_id=5, forced_eos_token_id=7,
         no_repeat_ngram_size=1, decoder_start_token_id=3),
]


@pytest.fixture(scope="session")
def generation_checkpoint(tmp_path_factory):
    """A T5 v1.1 checkpoint whose greedy continuations are varied (a random head mostly repeats one token)."""
    torch.manual_seed(1)
    # equal depths: Transformers 5 cannot generate when num_decoder_layers != num_layers (its cache is sized by
    # num_layers); the unequal case is checked against Transformers 4 below
    config = transformers.T5Config(**{**SMALL, **STYLES["v1.1-gated-gelu"], "num_decoder_layers": 2, "eos_token_id": 1})
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.shared.weight.mul_(4.0)
    folder = tmp_path_factory.mktemp("t5gen")
    model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("settings", GEN_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_generate_matches_transformers(generation_checkpoint, settings):
    folder, ref = generation_checkpoint
    model = T5ForConditionalGeneration.from_pretrained(folder)
    rng = np.random.RandomState(3)
    ids = rng.randint(2, 99, (3, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                                **settings).numpy()
    got = np.asarray(model.generate(ids, attention_mask=mask, **settings))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


# -- Transformers 4: the checkpoints the hub actually holds --------------------------------------------------------------
V4_BUILD = """
import json
folder = pathlib.Path(str(inputs["folder"]))
common = json.loads(str(inputs["common"]))
ids, mask, labels = (torch.tensor(inputs[k]) for k in ("ids", "mask", "labels"))
for name, cls, cfg_cls, extra in [
    ("v1", transformers.T5ForConditionalGeneration, transformers.T5Config, dict(feed_forward_proj="relu")),
    ("v11", transformers.T5ForConditionalGeneration, transformers.T5Config,
     dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3)),
    ("mt5", transformers.MT5ForConditionalGeneration, transformers.MT5Config,
     dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
]:
    torch.manual_seed(0)
    model = cls(cfg_cls(**common, **extra)).eval()
    with torch.no_grad():
        model.shared.weight.mul_(4.0)
    model.save_pretrained(folder / name)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        outputs[name + "_logits"] = out.logits
        outputs[name + "_loss"] = out.loss
        # Transformers' cache cannot hold num_decoder_layers != num_layers: generate without it
        cache = model.config.num_decoder_layers == model.config.num_layers
        outputs[name + "_greedy"] = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                                                   use_cache=cache)
        outputs[name + "_beam"] = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=3,
                                                 no_repeat_ngram_size=2, length_penalty=0.7, do_sample=False,
                                                 use_cache=cache)
"""


@pytest.fixture(scope="session")
def v4_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5v4")
    ids, mask, _, labels = inputs()
    out = run_v4(V4_BUILD, {"folder": np.array(str(folder)), "common": np.array(json.dumps(SMALL)), "ids": ids,
                            "mask": mask, "labels": labels})
    return folder, out


@pytest.mark.parametrize("name", ["v1", "v11", "mt5"])
def test_transformers4_checkpoints(v4_checkpoints, name):
    """Checkpoints written by Transformers 4 (tied+scaled v1, untied v1.1, mT5): logits, loss and generate() equal."""
    folder, ref = v4_checkpoints
    config = json.loads((folder / name / "config.json").read_text())
    assert config.get("tie_word_embeddings", True) is (name == "v1")
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / name)
    ids, mask, _, labels = inputs()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert rel(out.logits, ref[name + "_logits"]) < TOL
    assert abs(float(out.loss) - float(ref[name + "_loss"])) < TOL * float(ref[name + "_loss"])
    np.testing.assert_array_equal(np.asarray(model.generate(ids, attention_mask=mask, max_new_tokens=10)), ref[name + "_greedy"])
    beam = model.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3, no_repeat_ngram_size=2, length_penalty=0.7)
    np.testing.assert_array_equal(np.asarray(beam), ref[name + "_beam"])


@pytest.mark.parametrize("name", ["v1", "v11", "mt5"])
def test_transformers5_reads_transformers4_checkpoints_alike(v4_checkpoints, name):
    """Transformers 5 keeps a distinct stored lm_head untied (and unscaled): same logits as 4.x and fxformers."""
    folder, ref = v4_checkpoints
    cls = transformers.MT5ForConditionalGeneration if name == "mt5" else transformers.T5ForConditionalGeneration
    ids, mask, _, labels = inputs()
    out = torch_out(cls.from_pretrained(folder / name).eval(), input_ids=ids, attention_mask=mask, labels=labels)
    assert rel(out.logits, ref[name + "_logits"]) < TOL


V4_RELOAD = """
folder = pathlib.Path(str(inputs["folder"]))
model, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, output_loading_info=True)
outputs["missing"] = np.array(len(info["missing_keys"]) + len(info["unexpected_keys"]))
with torch.no_grad():
    outputs["logits"] = model.eval()(input_ids=torch.tensor(inputs["ids"]), attention_mask=torch.tensor(inputs["mask"]),
                                     labels=torch.tensor(inputs["labels"])).logits
"""


@pytest.mark.parametrize("name", ["v11", "mt5"])
def test_untied_save_loads_in_transformers4(v4_checkpoints, name, tmp_path):
    folder, ref = v4_checkpoints
    AutoModelForSeq2SeqLM.from_pretrained(folder / name).save_pretrained(tmp_path)
    ids, mask, _, labels = inputs()
    out = run_v4(V4_RELOAD, {"folder": np.array(str(tmp_path)), "ids": ids, "mask": mask, "labels": labels})
    assert int(out["missing"]) == 0
    assert rel(out["logits"], ref[name + "_logits"]) < TOL


def test_config_reading():
    from fxformers.models.t5.configuration import MT5Config, T5Config

    c = T5Config(feed_forward_proj="gated-gelu")
    assert (c.is_gated_act, c.dense_act_fn, c.num_decoder_layers) == (True, "gelu_new", 6)
    assert T5Config(feed_forward_proj="gated-silu").dense_act_fn == "silu"
    assert T5Config(num_layers=3).num_decoder_layers == 3
    assert T5Config(tie_word_embeddings=False).scale_decoder_output() is False
    assert T5Config().scale_decoder_output() is True
    assert T5Config(scale_decoder_outputs=False).scale_decoder_output() is False  # written by Transformers 5
    assert MT5Config(tie_word_embeddings=True, transformers_version="5.0.0").scale_decoder_output() is False
    assert MT5Config(tie_word_embeddings=True).scale_decoder_output() is True  # Transformers 4 scales a tied mT5
    assert T5Config(hidden_size=64).d_model == 64
    with pytest.raises(ValueError, match="gated-<act>"):
        T5Config(feed_forward_proj="gelu-gated")
