"""The model contract: configs, Auto classes, hub resolution, input validation, pytrees, dtype, resizing, errors."""

import json
import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.hub import ModelNotFoundError

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=24)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **SMALL)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(bert_dir):
    return fxformers.BertForSequenceClassification.from_pretrained(bert_dir)


def ids(shape=(2, 6), high=99):
    return np.random.RandomState(0).randint(0, high, shape)


# -- configuration -----------------------------------------------------------------------------------------------
def test_config_reads_every_field_and_round_trips(tmp_path, bert_dir):
    raw = json.loads((bert_dir / "config.json").read_text())
    raw["some_future_field"] = {"nested": [1, 2]}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = fxformers.AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == "BertConfig"
    assert config.some_future_field == {"nested": [1, 2]}
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    config.save_pretrained(tmp_path / "again")
    again = transformers.AutoConfig.from_pretrained(tmp_path / "again")
    assert again.num_labels == 3 and again.hidden_size == 32 and again.some_future_field == {"nested": [1, 2]}


def test_num_labels_override_rebuilds_labels(bert_dir):
    config = fxformers.AutoConfig.from_pretrained(bert_dir, num_labels=5)
    assert config.num_labels == 5 and config.id2label[4] == "LABEL_4" and config.label2id["LABEL_4"] == 4
    ref = transformers.AutoConfig.from_pretrained(bert_dir, num_labels=5)
    assert ref.id2label == config.id2label


def test_aliases_follow_attribute_map():
    config = fxformers.DistilBertConfig(hidden_size=64, n_heads=4)
    assert config.dim == 64 and config.hidden_size == 64 and config.num_attention_heads == 4


def test_unknown_model_type_names_it_and_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "flubber"}))
    with pytest.raises(ValueError, match="flubber.*bert"):
        fxformers.AutoConfig.from_pretrained(tmp_path)


def test_bad_config_values_fail_clearly():
    with pytest.raises(ValueError, match="num_attention_heads"):
        fxformers.BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="problem_type"):
        fxformers.BertConfig(problem_type="ranking")


# -- resolution and loading --------------------------------------------------------------------------------------
def test_auto_model_classes_pick_the_architecture(bert_dir):
    assert type(fxformers.AutoModel.from_pretrained(bert_dir)).__name__ == "BertModel"
    assert type(fxformers.AutoModelForMaskedLM.from_pretrained(bert_dir)).__name__ == "BertForMaskedLM"
    with pytest.raises(ValueError, match="does not support model_type 'bert'"):
        fxformers.AutoModelForCausalLM.from_config(fxformers.BertConfig(**SMALL))


def test_hub_cache_layout_with_revision(tmp_path, bert_dir, monkeypatch):
    repo = tmp_path / "hub" / "models--org--tiny-bert"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(bert_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = fxformers.AutoModelForSequenceClassification.from_pretrained("org/tiny-bert", cache_dir=tmp_path / "hub")
    assert model.config.num_labels == 3
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert fxformers.AutoConfig.from_pretrained("org/tiny-bert", revision="abc123").hidden_size == 32
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # HF_HOME/hub is the cache
    assert fxformers.AutoConfig.from_pretrained("org/tiny-bert").hidden_size == 32


def test_missing_name_offline_fails_fast_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="org/not-a-model"):
        fxformers.AutoModel.from_pretrained("org/not-a-model")


def test_new_head_is_initialised_with_a_warning_and_seed(bert_dir, caplog):
    with caplog.at_level(logging.WARNING):
        a = fxformers.BertForQuestionAnswering.from_pretrained(bert_dir, num_labels=2, seed=1)
    assert "newly initialized" in caplog.text and "qa_outputs" in caplog.text
    b = fxformers.BertForQuestionAnswering.from_pretrained(bert_dir, num_labels=2, seed=1)
    np.testing.assert_array_equal(a.params["qa_outputs"]["kernel"], b.params["qa_outputs"]["kernel"])


def test_shape_mismatch_reports_every_weight_and_can_be_ignored(bert_dir):
    with pytest.raises(ValueError, match="classifier.weight.*classifier.bias|classifier.bias.*classifier.weight"):
        fxformers.BertForSequenceClassification.from_pretrained(bert_dir, num_labels=7)
    model = fxformers.BertForSequenceClassification.from_pretrained(bert_dir, num_labels=7, ignore_mismatched_sizes=True)
    assert model.params["classifier"]["kernel"].shape == (32, 7)


def test_missing_base_weights_are_an_error_naming_them(tmp_path, bert_dir):
    from safetensors.numpy import load_file, save_file

    weights = load_file(bert_dir / "model.safetensors")
    del weights["bert.encoder.layer.1.output.dense.weight"]
    shutil.copy(bert_dir / "config.json", tmp_path / "config.json")
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="encoder/layer_1/output/kernel"):
        fxformers.BertForSequenceClassification.from_pretrained(tmp_path)


def test_base_checkpoint_loads_into_head_and_back(tmp_path, bert):
    bert_model = fxformers.BertModel.from_state_dict(bert.state_dict(), bert.config)  # strips the `bert.` prefix
    bert_model.save_pretrained(tmp_path)
    head = fxformers.BertForSequenceClassification.from_pretrained(tmp_path, seed=0)  # adds it back
    np.testing.assert_array_equal(head.params["bert"]["pooler"]["kernel"], bert.params["bert"]["pooler"]["kernel"])


# -- running ---------------------------------------------------------------------------------------------------------
def test_out_of_range_ids_are_refused_not_clamped(bert):
    bad = ids()
    bad[1, 3] = 99
    with pytest.raises(ValueError, match=r"99 at index \(1, 3\).*\[0, 99\)"):
        bert(input_ids=bad)
    with pytest.raises(ValueError, match="-5"):
        bert(input_ids=np.full((1, 4), -5))
    with pytest.raises(ValueError, match="token_type_ids"):
        bert(input_ids=ids(), token_type_ids=np.full((2, 6), 2))


def test_too_long_and_malformed_inputs_are_refused(bert):
    with pytest.raises(ValueError, match="longer than this model's limit of 24"):
        bert(input_ids=ids((1, 25)))
    with pytest.raises(TypeError, match="integers"):
        bert(input_ids=np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        bert(input_ids=ids(), attention_mask=np.ones((2, 5)))
    with pytest.raises(ValueError, match="train=True needs dropout_rng"):
        bert(input_ids=ids(), train=True)


def test_dropout_only_in_training(bert):
    x = ids()
    np.testing.assert_array_equal(bert(input_ids=x).logits, bert(input_ids=x).logits)
    a = bert(input_ids=x, train=True, dropout_rng=jax.random.PRNGKey(0)).logits
    b = bert(input_ids=x, train=True, dropout_rng=jax.random.PRNGKey(1)).logits
    assert not np.allclose(a, b)


def test_model_is_a_pytree_for_grad_and_jit(bert):
    x, labels = ids(), np.array([0, 2])

    def loss(model):
        return model.module.apply({"params": model.params}, input_ids=x, labels=labels).loss

    grads = jax.grad(loss)(bert)
    assert type(grads) is type(bert)
    assert grads.params["classifier"]["kernel"].shape == (32, 3)
    assert float(jax.jit(loss)(bert)) == pytest.approx(float(bert(input_ids=x, labels=labels).loss), rel=1e-6)


def test_outputs_have_attribute_key_and_index_access(bert):
    out = bert(input_ids=ids(), labels=np.array([0, 1]))
    assert out[0] is out.loss and out["logits"] is out.logits and out.keys() == ["loss", "logits"]
    assert bert(input_ids=ids())[0] is not None


def test_from_config_is_deterministic_and_counts_parameters():
    config = fxformers.BertConfig(**SMALL)
    a, b = fxformers.BertModel.from_config(config, seed=3), fxformers.BertModel.from_config(config, seed=3)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x, y: bool((x == y).all()), a.params, b.params))
    ref = transformers.BertModel(transformers.BertConfig(**SMALL))
    assert a.num_parameters() == sum(p.numel() for p in ref.parameters())


def test_resize_token_embeddings_keeps_old_rows(tmp_path):
    config = fxformers.BertConfig(**SMALL)
    model = fxformers.BertForMaskedLM.from_config(config)
    old = np.asarray(model.params["bert"]["embeddings"]["word_embeddings"]["embedding"])
    model.resize_token_embeddings(103)
    new = np.asarray(model.params["bert"]["embeddings"]["word_embeddings"]["embedding"])
    assert new.shape == (103, 32) and model.params["bias"].shape == (103,) and model.config.vocab_size == 103
    np.testing.assert_array_equal(new[:99], old)
    assert model(input_ids=np.array([[101, 102]])).logits.shape == (1, 2, 103)
    model.save_pretrained(tmp_path)
    assert transformers.BertForMaskedLM.from_pretrained(tmp_path).config.vocab_size == 103


def test_inputs_embeds_equal_input_ids(bert):
    x = ids()
    embeds = bert.params["bert"]["embeddings"]["word_embeddings"]["embedding"][x]
    np.testing.assert_allclose(bert(inputs_embeds=embeds).logits, bert(input_ids=x).logits, rtol=1e-6, atol=1e-6)


def test_bfloat16_model_casts_params():
    model = fxformers.BertModel.from_config(fxformers.BertConfig(**SMALL), dtype=jnp.bfloat16)
    assert {str(a.dtype) for a in jax.tree_util.tree_leaves(model.params)} == {"bfloat16"}
    assert model.astype("float32").params["pooler"]["kernel"].dtype == jnp.float32
