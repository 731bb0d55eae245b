"""ELECTRA parity with PyTorch transformers: every head (discriminator, generator, classification, token
classification, QA, multiple choice, bare model) on a projected (embedding_size != hidden_size) and an unprojected
configuration, losses, save round trips, Auto classes and partition rules."""

import numpy as np
import pytest

import fxformers
from encoder_family_helpers import (
    assert_matches,
    assert_partition_rules,
    assert_round_trip,
    assert_sharded_equals_unsharded,
    batch,
    labels_for,
    torch_model,
)

VOCAB = 99
CONFIGS = {
    # ELECTRA-small style: embeddings of width 16 projected to the hidden width 32
    "projected": dict(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=24, num_labels=3),
    # no projection, another activation, an untied generator head, a different multiple-choice summary
    "plain": dict(vocab_size=VOCAB, embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=40, max_position_embeddings=24, num_labels=3, hidden_act="gelu_new",
                  tie_word_embeddings=False, summary_type="mean", summary_activation="tanh", layer_norm_eps=1e-7),
}
HEADS = ["Model", "ForPreTraining", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
         "ForQuestionAnswering", "ForMultipleChoice"]


def inputs_for(head, config):
    inputs = batch(head, VOCAB, 0, 2)
    return {**inputs, **labels_for(head, inputs, config["num_labels"], VOCAB)}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_head_matches_pytorch(tmp_path, name, head):
    config = {**CONFIGS[name], **({"num_labels": 2} if head == "ForQuestionAnswering" else {})}
    tm = torch_model("Electra", head, config)
    tm.save_pretrained(tmp_path / "torch")
    fm = getattr(fxformers, "Electra" + head).from_pretrained(tmp_path / "torch")
    inputs = inputs_for(head, config)
    assert_matches(fm, tm, inputs, head)
    assert_round_trip(fm, tm, inputs, head, "Electra", tmp_path / "saved")


def test_auto_classes_and_base_checkpoint_into_heads(tmp_path):
    tm = torch_model("Electra", "ForPreTraining", CONFIGS["projected"])
    tm.save_pretrained(tmp_path)
    assert type(fxformers.AutoModelForPreTraining.from_pretrained(tmp_path)).__name__ == "ElectraForPreTraining"
    base = fxformers.AutoModel.from_pretrained(tmp_path)  # the electra. prefix is stripped for the bare model
    assert type(base).__name__ == "ElectraModel"
    assert type(fxformers.AutoModelForMaskedLM.from_pretrained(tmp_path)).__name__ == "ElectraForMaskedLM"
    inputs = batch("Model", VOCAB, 0, 2)
    ref = tm.electra(**{k: __import__("torch").tensor(v) for k, v in inputs.items()}).last_hidden_state.detach().numpy()
    assert np.abs(np.asarray(base(**inputs).last_hidden_state) - ref).max() < 1e-5 * np.abs(ref).max()


def test_bad_summary_type_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="summary_type"):
        fxformers.ElectraConfig(summary_type="attn")


def test_partition_rules_cover_every_head():
    classes = [getattr(fxformers, "Electra" + h) for h in HEADS]
    configs = [fxformers.ElectraConfig(**c) for c in CONFIGS.values()]
    assert_partition_rules(classes, configs)


@pytest.mark.mesh
def test_sharded_equals_unsharded():
    model = fxformers.ElectraForMaskedLM.from_config(fxformers.ElectraConfig(**CONFIGS["projected"]))
    assert_sharded_equals_unsharded(model, batch("ForMaskedLM", VOCAB, 0, 2))


def test_unpadded_mode_matches():
    tm = torch_model("Electra", "Model", CONFIGS["projected"])
    fm = fxformers.ElectraModel.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()},
                                               fxformers.ElectraConfig(**tm.config.to_dict()))
    inputs = batch("Model", VOCAB, 0, 2)
    dense, packed = fm(**inputs).last_hidden_state, fm(**inputs, unpad_inputs=True).last_hidden_state
    real = inputs["attention_mask"][..., None] > 0
    assert np.abs(np.where(real, np.asarray(dense) - np.asarray(packed), 0)).max() < 1e-5
