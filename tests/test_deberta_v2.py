"""DeBERTa-v2/v3 parity with PyTorch transformers: disentangled attention with each pos_att_type combination, with
and without log position buckets, shared and separate position projections, normalised relative embeddings, v2's
convolution, factorised embeddings, both MLM heads; every head, losses, save round trips, partition rules."""

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
    rel_err,
    run_torch,
    torch_model,
)
from fxformers.models.deberta_v2.modeling import relative_positions

VOCAB = 99
BASE = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=24, num_labels=3)
CONFIGS = {
    # DeBERTa-v3: both terms, log buckets shorter than the text, shared keys, normalised rel embeddings, no absolute
    "v3": dict(BASE, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8, max_relative_positions=-1,
               share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0),
    # DeBERTa-v2: the old string spelling, separate projections, distances clipped at 6, conv layer, token types,
    # factorised embeddings, an untied legacy MLM decoder
    "v2": dict(BASE, relative_attention=True, pos_att_type="c2p|p2c", max_relative_positions=6, share_att_key=False,
               conv_kernel_size=3, conv_act="gelu", conv_groups=2, type_vocab_size=2, embedding_size=16,
               position_biased_input=True, tie_word_embeddings=False, hidden_act="gelu_new"),
    # c2p only with buckets, separate key projection, the non-legacy MLM head
    "c2p": dict(BASE, relative_attention=True, pos_att_type=["c2p"], position_buckets=4, max_relative_positions=12,
                legacy=False, norm_rel_ebd="layer_norm"),
    # p2c only, no buckets, shared keys
    "p2c": dict(BASE, relative_attention=True, pos_att_type=["p2c"], share_att_key=True, position_biased_input=False),
    # no relative attention: absolute positions only (DeBERTa without its disentangled terms)
    "absolute": dict(BASE, relative_attention=False, type_vocab_size=2),
}
ALL_HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM",
             "ForMultipleChoice"]
CASES = [(n, h) for n in ("v3", "v2") for h in ALL_HEADS] + [(n, h) for n in ("c2p", "p2c", "absolute") for h in ("Model", "ForMaskedLM")]


def config_for(name, head):
    return {**CONFIGS[name], **({"num_labels": 2} if head == "ForQuestionAnswering" else {})}


@pytest.mark.parametrize("name,head", CASES)
def test_every_head_matches_pytorch(tmp_path, name, head):
    config = config_for(name, head)
    tm = torch_model("DebertaV2", head, config)
    tm.save_pretrained(tmp_path / "torch")
    fm = getattr(fxformers, "DebertaV2" + head).from_pretrained(tmp_path / "torch")
    inputs = batch(head, VOCAB, 0, tm.config.type_vocab_size)
    inputs = {**inputs, **labels_for(head, inputs, config["num_labels"], VOCAB)}
    assert_matches(fm, tm, inputs, head)
    assert_round_trip(fm, tm, inputs, head, "DebertaV2", tmp_path / "saved")


def test_sequence_classification_losses_match_pytorch():
    """DeBERTa's own rules: negative labels ignored, soft [B, L] targets, regression with one label."""
    cases = [
        (dict(num_labels=3), np.array([2, -1])),
        (dict(num_labels=3), np.array([-1, -1])),  # nothing labelled: loss 0
        (dict(num_labels=3), np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], np.float32)),
        (dict(num_labels=1), np.array([0.5, -1.5], np.float32)),
        (dict(num_labels=3, problem_type="multi_label_classification"), np.array([[0, 1, 1], [1, 0, 0]], np.float32)),
    ]
    inputs = batch("ForSequenceClassification", VOCAB, 0, 0)
    for overrides, labels in cases:
        tm = torch_model("DebertaV2", "ForSequenceClassification", {**CONFIGS["v3"], **overrides})
        fm = fxformers.DebertaV2ForSequenceClassification.from_state_dict(
            {k: v.numpy() for k, v in tm.state_dict().items()}, fxformers.DebertaV2Config(**tm.config.to_dict()))
        ref = run_torch(tm, {**inputs, "labels": labels}).loss.item()
        assert abs(float(fm(**inputs, labels=labels).loss) - ref) <= 1e-5 * max(1.0, abs(ref)), (overrides, labels)


@pytest.mark.parametrize("buckets,max_position", [(8, 24), (16, 512), (256, 512), (4, 12)])
def test_log_buckets_equal_transformers(buckets, max_position):
    import torch
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    ref = build_relative_position(torch.zeros(1, 600, 1), torch.zeros(1, 600, 1), bucket_size=buckets,
                                  max_position=max_position)[0].numpy()
    np.testing.assert_array_equal(relative_positions(600, buckets, max_position), ref)


def test_string_pos_att_type_and_saved_config_load_in_transformers(tmp_path):
    import transformers

    config = fxformers.DebertaV2Config(**CONFIGS["v2"])
    assert config.pos_att_type == ["c2p", "p2c"]
    model = fxformers.DebertaV2Model.from_config(config)
    model.save_pretrained(tmp_path)
    back = transformers.AutoConfig.from_pretrained(tmp_path)
    assert back.pos_att_type == ["c2p", "p2c"] and back.embedding_size == 16 and back.pooler_hidden_size == 32
    inputs = batch("Model", VOCAB, 0, 2)
    tm = transformers.DebertaV2Model.from_pretrained(tmp_path).eval()
    assert rel_err(model(**inputs).last_hidden_state, run_torch(tm, inputs).last_hidden_state) < 1e-5


def test_v3_runs_past_max_position_embeddings():
    """No absolute table (position_biased_input=False): longer inputs work, as in Transformers."""
    tm = torch_model("DebertaV2", "Model", CONFIGS["v3"])
    fm = fxformers.DebertaV2Model.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()},
                                                 fxformers.DebertaV2Config(**tm.config.to_dict()))
    inputs = {"input_ids": np.random.RandomState(0).randint(5, VOCAB, (1, 30))}  # 30 > max_position_embeddings=24
    assert rel_err(fm(**inputs).last_hidden_state, run_torch(tm, inputs).last_hidden_state) < 1e-5


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="pos_att_type"):
        fxformers.DebertaV2Config(pos_att_type=["c2c"])
    with pytest.raises(ValueError, match="conv_kernel_size"):
        fxformers.DebertaV2Config(conv_kernel_size=2)


def test_partition_rules_cover_every_head():
    classes = [getattr(fxformers, "DebertaV2" + h) for h in ALL_HEADS]
    configs = [fxformers.DebertaV2Config(**c) for c in CONFIGS.values()]
    assert_partition_rules(classes, configs)


@pytest.mark.mesh
def test_sharded_equals_unsharded():
    model = fxformers.DebertaV2ForMaskedLM.from_config(fxformers.DebertaV2Config(**CONFIGS["v2"]))
    assert_sharded_equals_unsharded(model, batch("ForMaskedLM", VOCAB, 0, 2))
