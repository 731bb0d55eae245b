"""ALBERT parity with PyTorch transformers: every head on configurations with one and two hidden groups, several
inner layers, factorised embeddings, an untied MLM decoder; losses, save round trips and partition rules."""

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
    # one group shared by all 3 layers, factorised embeddings 16 -> 32
    "one_group": dict(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=1,
                      num_attention_heads=4, intermediate_size=37, max_position_embeddings=24, num_labels=3),
    # two groups over 3 layers (steps 0,1 -> group 0; step 2 -> group 1), two inner layers each, untied decoder
    "two_groups": dict(vocab_size=VOCAB, embedding_size=24, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2,
                       inner_group_num=2, num_attention_heads=2, intermediate_size=40, max_position_embeddings=24,
                       num_labels=3, hidden_act="gelu", tie_word_embeddings=False, layer_norm_eps=1e-7),
}
HEADS = ["Model", "ForPreTraining", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
         "ForQuestionAnswering", "ForMultipleChoice"]


def inputs_for(head, config):
    inputs = batch(head, VOCAB, 0, 2)
    if head == "ForPreTraining":
        rng = np.random.RandomState(5)
        mask = inputs["attention_mask"]
        return {**inputs, "labels": np.where(rng.rand(*mask.shape) < 0.4, rng.randint(0, VOCAB, mask.shape), -100),
                "sentence_order_label": np.array([0, 1])}
    return {**inputs, **labels_for(head, inputs, config["num_labels"], VOCAB)}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_head_matches_pytorch(tmp_path, name, head):
    config = {**CONFIGS[name], **({"num_labels": 2} if head in ("ForQuestionAnswering", "ForPreTraining") else {})}
    tm = torch_model("Albert", head, config)
    tm.save_pretrained(tmp_path / "torch")
    fm = getattr(fxformers, "Albert" + head).from_pretrained(tmp_path / "torch")
    inputs = inputs_for(head, config)
    assert_matches(fm, tm, inputs, head)
    assert_round_trip(fm, tm, inputs, head, "Albert", tmp_path / "saved")


def test_shared_layers_hold_one_weight_set_per_group():
    model = fxformers.AlbertModel.from_config(fxformers.AlbertConfig(**CONFIGS["two_groups"]))
    groups = model.params["encoder"]
    assert sorted(k for k in groups if k.startswith("albert_layer_groups")) == ["albert_layer_groups_0", "albert_layer_groups_1"]
    assert sorted(groups["albert_layer_groups_0"]) == ["albert_layers_0", "albert_layers_1"]


def test_unpadded_mode_matches(tmp_path):
    tm = torch_model("Albert", "Model", CONFIGS["two_groups"])
    fm = fxformers.AlbertModel.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()},
                                              fxformers.AlbertConfig(**tm.config.to_dict()))
    inputs = batch("Model", VOCAB, 0, 2)
    dense, packed = fm(**inputs).last_hidden_state, fm(**inputs, unpad_inputs=True).last_hidden_state
    real = inputs["attention_mask"][..., None] > 0
    assert np.abs(np.where(real, np.asarray(dense) - np.asarray(packed), 0)).max() < 1e-5


def test_bad_groups_are_a_clear_error():
    with pytest.raises(ValueError, match="num_hidden_groups"):
        fxformers.AlbertConfig(num_hidden_layers=2, num_hidden_groups=3)


def test_partition_rules_cover_every_head():
    classes = [getattr(fxformers, "Albert" + h) for h in HEADS]
    configs = [fxformers.AlbertConfig(**c) for c in CONFIGS.values()]
    assert_partition_rules(classes, configs)


@pytest.mark.mesh
def test_sharded_equals_unsharded():
    model = fxformers.AlbertForMaskedLM.from_config(fxformers.AlbertConfig(**CONFIGS["two_groups"]))
    assert_sharded_equals_unsharded(model, batch("ForMaskedLM", VOCAB, 0, 2))
