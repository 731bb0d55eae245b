"""BART / DistilBART parity with transformers: formats, every head, loss, EOS pooling, round trip, generate()."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fxformers.auto import AutoModel, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification  # noqa: E402
from fxformers.models.bart.modeling import (  # noqa: E402
    BartForConditionalGeneration,
    BartForSequenceClassification,
    BartModel,
)

TOL = 1e-5
SMALL = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
             decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=64)
STYLES = {
    "bart": dict(),
    "scaled-gelu_new": dict(scale_embedding=True, activation_function="gelu_new"),
    "distilbart": dict(encoder_layers=3, decoder_layers=1, activation_function="relu"),
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
    else:  # pytorch_model.bin with the tied embed_tokens / lm_head copies stored, as Transformers 4 wrote it
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 99, (2, 11))
    ids[:, -1] = 2  # one row padded after its EOS, both with two EOS tokens
    ids[0, 4] = ids[1, 3] = 2
    ids[1, 9] = 2
    ids[1, 10] = 1
    mask = (ids != 1).astype(np.int64)
    dec = rng.randint(3, 99, (2, 6))
    labels = dec.copy()
    labels[0, 4:] = -100
    return ids, mask, dec, labels


def torch_out(model, **kw):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in kw.items()}, output_hidden_states=True)


@pytest.fixture(scope="session")
def bart_checkpoints(tmp_path_factory):
    """{(style, format): (folder, torch BartForConditionalGeneration)} with a random final_logits_bias."""
    root = tmp_path_factory.mktemp("bart")
    out = {}
    for style, kw in STYLES.items():
        torch.manual_seed(0)
        model = transformers.BartForConditionalGeneration(transformers.BartConfig(**{**SMALL, **kw})).eval()
        with torch.no_grad():
            model.final_logits_bias.normal_()
        for fmt in FORMATS if style == "bart" else FORMATS[:1]:
            out[style, fmt] = (save(model, root / f"{style}-{fmt}", fmt), model)
    return out


@pytest.mark.parametrize("style", list(STYLES))
def test_lm_forward_parity(bart_checkpoints, style):
    folder, ref = bart_checkpoints[style, "safetensors"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert isinstance(model, BartForConditionalGeneration)
    ids, mask, _, labels = inputs()
    expected = torch_out(ref, input_ids=ids, attention_mask=mask, labels=labels)
    got = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert rel(got.logits, expected.logits) < TOL
    assert abs(float(got.loss) - float(expected.loss)) < TOL * float(expected.loss)
    assert rel(got.encoder_last_hidden_state, expected.encoder_last_hidden_state) < TOL
    for name in ("encoder_hidden_states", "decoder_hidden_states"):
        ours, theirs = getattr(got, name), getattr(expected, name)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert rel(a, b) < TOL, name


@pytest.mark.parametrize("fmt", ["sharded", "bin"])
def test_formats_load_the_same_weights(bart_checkpoints, fmt):
    reference = BartForConditionalGeneration.from_pretrained(bart_checkpoints["bart", "safetensors"][0]).params
    params = BartForConditionalGeneration.from_pretrained(bart_checkpoints["bart", fmt][0]).params
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_attentions_and_decoder_masks(bart_checkpoints):
    folder, ref = bart_checkpoints["bart", "safetensors"]
    model = BartForConditionalGeneration.from_pretrained(folder)
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


def test_base_model_shifts_input_ids(bart_checkpoints):
    """BartModel without decoder inputs decodes input_ids shifted right (the denoising setup), as Transformers does."""
    folder, _ = bart_checkpoints["bart", "bin"]
    ref = transformers.BartModel.from_pretrained(folder).eval()
    model = AutoModel.from_pretrained(folder)
    assert isinstance(model, BartModel)
    ids, mask, _, _ = inputs()
    expected = torch_out(ref, input_ids=ids, attention_mask=mask)
    got = model(input_ids=ids, attention_mask=mask)
    assert rel(got.last_hidden_state, expected.last_hidden_state) < TOL


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.BartConfig(**SMALL, num_labels=3, id2label={0: "contradiction", 1: "neutral", 2: "entailment"})
    ref = transformers.BartForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("bartcls")
    ref.save_pretrained(folder)
    return folder, ref


def test_sequence_classification(classifier):
    folder, ref = classifier
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert isinstance(model, BartForSequenceClassification)
    assert model.config.id2label[2] == "entailment"
    ids, mask, _, _ = inputs()
    labels = np.array([2, 0])
    expected = torch_out(ref, input_ids=ids, attention_mask=mask, labels=labels)
    got = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert rel(got.logits, expected.logits) < TOL
    assert abs(float(got.loss) - float(expected.loss)) < TOL * float(expected.loss)


def test_sequence_classification_eos_checks(classifier):
    model = BartForSequenceClassification.from_pretrained(classifier[0])
    ids, mask, _, _ = inputs()
    ids[0, 4] = 5  # row 0 now has one EOS, row 1 two
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="at least one <eos>"):
        model(input_ids=np.full((1, 4), 7))


def test_classifier_head_from_lm_checkpoint_is_new(bart_checkpoints, caplog):
    folder, _ = bart_checkpoints["bart", "safetensors"]
    model = BartForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert model.params["classification_head"]["out_proj"]["kernel"].shape == (32, 2)
    assert "newly initialized" in caplog.text


@pytest.mark.parametrize("head", ["lm", "classification"])
def test_save_pretrained_round_trip(bart_checkpoints, classifier, head, tmp_path):
    if head == "lm":
        folder, ref = bart_checkpoints["bart", "safetensors"]
        cls, torch_cls, key = BartForConditionalGeneration, transformers.BartForConditionalGeneration, "logits"
    else:
        folder, ref = classifier
        cls, torch_cls, key = BartForSequenceClassification, transformers.BartForSequenceClassification, "logits"
    cls.from_pretrained(folder).save_pretrained(tmp_path)
    reloaded, info = torch_cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask, _, _ = inputs()
    assert rel(torch_out(reloaded.eval(), input_ids=ids, attention_mask=mask)[key],
               torch_out(ref, input_ids=ids, attention_mask=mask)[key]) < TOL


GEN_SETTINGS = [
    dict(max_new_tokens=12),
    dict(max_new_tokens=9, num_beams=4, length_penalty=0.5, early_stopping=True, no_repeat_ngram_size=2,
         num_return_sequences=2),
    dict(max_new_tokens=9, num_beams=3, length_penalty=2.0, early_stopping=False),
    dict(max_new_tokens=8, min_new_tokens=5, forced_bos_token_id=0, forced_eos_token_id=2, no_repeat_ngram_size=1),
]


@pytest.fixture(scope="session")
def generation_checkpoint(tmp_path_factory):
    """A BART whose continuations vary (scaled embeddings) and end with EOS now and then."""
    torch.manual_seed(2)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(**SMALL)).eval()
    with torch.no_grad():
        model.model.shared.weight.mul_(8.0)
        model.final_logits_bias[0, 2] = -3.0  # EOS a little less likely than the rest
    folder = tmp_path_factory.mktemp("bartgen")
    model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("settings", GEN_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_generate_matches_transformers(generation_checkpoint, settings):
    folder, ref = generation_checkpoint
    model = BartForConditionalGeneration.from_pretrained(folder)
    rng = np.random.RandomState(3)
    ids = rng.randint(3, 99, (3, 9))
    ids[:, 0], ids[:, -1] = 0, 2
    ids[1, 6], ids[1, 7:] = 2, 1
    mask = (ids != 1).astype(np.int64)
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                                **settings).numpy()
    got = np.asarray(model.generate(ids, attention_mask=mask, **settings))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_config_defaults():
    from fxformers.models.bart.configuration import BartConfig

    config = BartConfig()
    assert config.num_labels == 3 and config.decoder_start_token_id == 2 and config.forced_eos_token_id == 2
    assert BartConfig(hidden_size=48, encoder_attention_heads=4, decoder_attention_heads=4).d_model == 48
    with pytest.raises(ValueError, match="decoder_attention_heads"):
        BartConfig(d_model=30, encoder_attention_heads=3, decoder_attention_heads=4)


# -- mBART: pre-norm layers, final layer norms, the language-id shift -----------------------------------------------------
@pytest.fixture(scope="session")
def mbart_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.MBartConfig(**SMALL, scale_embedding=True, decoder_start_token_id=2)
    model = transformers.MBartForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.shared.weight.mul_(8.0)
    folder = tmp_path_factory.mktemp("mbart")
    model.save_pretrained(folder)
    return folder, model


def test_mbart_parity_and_generate(mbart_checkpoint):
    from fxformers.models.mbart.modeling import MBartForConditionalGeneration

    folder, ref = mbart_checkpoint
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert isinstance(model, MBartForConditionalGeneration)
    ids, mask, _, labels = inputs()
    expected = torch_out(ref, input_ids=ids, attention_mask=mask, labels=labels)
    got = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert rel(got.logits, expected.logits) < TOL
    assert abs(float(got.loss) - float(expected.loss)) < TOL * float(expected.loss)
    for a, b in zip(got.decoder_hidden_states, expected.decoder_hidden_states):
        assert rel(a, b) < TOL
    settings = dict(max_new_tokens=8, num_beams=3, no_repeat_ngram_size=2)
    with torch.no_grad():
        want = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False, **settings)
    np.testing.assert_array_equal(np.asarray(model.generate(ids, attention_mask=mask, **settings)), want.numpy())


def test_mbart_base_model_wraps_language_id(mbart_checkpoint, tmp_path):
    """Without decoder inputs MBartModel decodes input_ids shifted with the last non-pad token moved to the front."""
    folder, _ = mbart_checkpoint
    ref = transformers.MBartModel.from_pretrained(folder).eval()
    model = AutoModel.from_pretrained(folder)
    ids, mask, _, _ = inputs()
    expected = torch_out(ref, input_ids=ids, attention_mask=mask)
    assert rel(model(input_ids=ids, attention_mask=mask).last_hidden_state, expected.last_hidden_state) < TOL
    model.save_pretrained(tmp_path)
    _, info = transformers.MBartModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_generate_refuses_more_positions_than_the_table(generation_checkpoint):
    """Learned positions: a source or decoder longer than max_position_embeddings raises instead of clamping."""
    model = BartForConditionalGeneration.from_pretrained(generation_checkpoint[0])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(np.full((1, 7), 5), max_new_tokens=64)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(np.full((1, 65), 5), max_new_tokens=4)
