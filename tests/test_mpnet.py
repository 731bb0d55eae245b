"""MPNet parity with PyTorch transformers (every head, relative position bias, fairseq positions, losses, save round
trip, partition rules) and sentence-transformers MPNet checkpoints through SentenceEmbedder."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten

HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM",
         "ForMultipleChoice"]
VOCAB = 99
BASE = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=80)
CONFIGS = {
    "base": {},
    "untied-gelu_new": dict(tie_word_embeddings=False, hidden_act="gelu_new", relative_attention_num_buckets=40,
                            layer_norm_eps=1e-5),
}


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-12))


def torch_model(head: str, seed: int = 0, **overrides):
    config = transformers.MPNetConfig(**{**BASE, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, "MPNet" + head)(config).eval()
    with torch.no_grad():  # the bias table starts near zero: make it matter
        for name, p in model.named_parameters():
            if "relative_attention_bias" in name or name.endswith("bias") and "lm_head" in name:
                p.normal_(0, 1.0)  # and the two vocabulary biases, which differ when untied
    return model


def batch(head: str, length: int = 70, seed: int = 0):
    """Padded batch (pad id 1, as MPNet's positions expect); long enough to reach the logarithmic buckets."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, VOCAB, (2, length))
    mask = np.ones_like(ids)
    ids[1, 40:], mask[1, 40:] = 1, 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if head == "ForMultipleChoice":
        inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}  # [B, C, T]
    return inputs


def run_torch(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


def output_key(head: str) -> str:
    return {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}.get(head, "logits")


def from_torch(tm, head):
    cls = getattr(fxformers, "MPNet" + head)
    return cls.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()}, cls.config_class(**tm.config.to_dict()))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("head", HEADS)
def test_every_head_matches_pytorch(tmp_path, head, config):
    tm = torch_model(head, **CONFIGS[config])
    tm.save_pretrained(tmp_path)
    fm = getattr(fxformers, "MPNet" + head).from_pretrained(tmp_path)
    inputs = batch(head)
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    assert rel_err(out[output_key(head)], ref[output_key(head)]) < 1e-5
    if head == "ForQuestionAnswering":
        assert rel_err(out.end_logits, ref.end_logits) < 1e-5
    if head == "Model":
        assert rel_err(out.pooler_output, ref.pooler_output) < 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert rel_err(ours, theirs) < 1e-5
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert rel_err(ours, theirs) < 1e-5


def test_auto_classes_inputs_embeds_and_unpadded_mode(tmp_path):
    tm = torch_model("ForSequenceClassification", num_labels=3)
    tm.save_pretrained(tmp_path)
    fm = fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(fm).__name__ == "MPNetForSequenceClassification"
    inputs = batch("ForSequenceClassification")
    ref = run_torch(tm, inputs).logits
    assert rel_err(fm(**inputs).logits, ref) < 1e-5
    assert rel_err(fm(**inputs, unpad_inputs=True).logits, ref) < 1e-5
    embeds = tm.mpnet.embeddings.word_embeddings(torch.tensor(inputs["input_ids"])).detach().numpy()
    ref_embeds = run_torch(tm, {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"]}).logits
    assert rel_err(fm(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits, ref_embeds) < 1e-5
    ones = np.ones_like(inputs["input_ids"])  # ignored, as Transformers ignores them
    assert rel_err(fm(**inputs, token_type_ids=ones).logits, ref) < 1e-5


def test_losses_match_pytorch():
    rng = np.random.RandomState(3)
    mask = batch("Model")["attention_mask"]
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
            tm = torch_model(head, **overrides)
            fm = from_torch(tm, head)
            inputs = {**batch(head), **labels}
            ref = run_torch(tm, inputs).loss.item()
            assert abs(float(fm(**inputs).loss) - ref) <= 1e-5 * max(1.0, abs(ref)), (head, overrides)


def test_save_pretrained_round_trip_into_transformers(tmp_path):
    for head in HEADS:
        tm = torch_model(head, seed=1, **({"tie_word_embeddings": False} if head == "ForMaskedLM" else {}))
        fm = from_torch(tm, head)
        fm.save_pretrained(tmp_path / head)
        back, info = getattr(transformers, "MPNet" + head).from_pretrained(tmp_path / head, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        inputs = batch(head)
        assert rel_err(run_torch(back.eval(), inputs)[output_key(head)], run_torch(tm, inputs)[output_key(head)]) < 1e-5


def param_shapes(cls, config) -> dict:
    """{flat path: shape} of a class's params, traced only (nothing is initialised)."""
    model = cls._from_parts(config, None, "float32")
    tree = jax.eval_shape(lambda r: model.module.init(r, **model.dummy_inputs())["params"], jax.random.PRNGKey(0))
    return {p: v.shape for p, v in flatten(tree).items()}


@pytest.mark.mesh
def test_partition_rules_cover_every_head_and_shard_exactly():
    from fxformers.sharding import check_rules, create_mesh, param_shardings

    for tied in (True, False):  # the rules are built from the config: check each config over every head
        config = fxformers.MPNetConfig(**{**BASE, "tie_word_embeddings": tied})
        shapes = {}
        for head in HEADS:
            shapes.update(param_shapes(getattr(fxformers, "MPNet" + head), config))
        check_rules(fxformers.MPNetModel.partition_rules(config), shapes, what="MPNet", allow_unused=False)
    rules = fxformers.MPNetModel.partition_rules(fxformers.MPNetConfig(**BASE))
    if len(jax.devices()) < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 for the sharded comparison")
    mesh = create_mesh(data=2, fsdp=2, model=2)
    model = fxformers.MPNetForMaskedLM.from_config(fxformers.MPNetConfig(**BASE))
    sharded = jax.device_put(model.params, param_shardings(rules, model.params, mesh))
    inputs = batch("ForMaskedLM", length=16)
    assert rel_err(model(**inputs, params=sharded).logits, model(**inputs).logits) < 1e-5


# -- sentence-transformers ---------------------------------------------------------------------------------------
WORDS = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"] + \
    "a man is eating food the girl carrying baby riding horse on an enclosed ground hello world ##s ##ing . , !".split()


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory):
    """A tiny sentence-transformers MPNet folder: modules.json, 1_Pooling, sentence_bert_config.json, Normalize."""
    root = tmp_path_factory.mktemp("st-mpnet")
    tok = transformers.MPNetTokenizer(vocab={w: i for i, w in enumerate(WORDS)})  # <pad> = 1, as real MPNet
    tm = torch_model("Model", seed=2, vocab_size=len(tok))
    folder = root / "model"
    tm.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12, "do_lower_case": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return folder


def test_sentence_embedder_equals_sentence_transformers(st_folder):
    st = pytest.importorskip("sentence_transformers")
    from fxformers.pipelines import SentenceEmbedder

    sentences = ["a man is eating food .", "the girl is carrying a baby !", "hello world",
                 "a man is riding a horse on an enclosed ground , the girl is eating food"]
    reference = st.SentenceTransformer(str(st_folder), device="cpu").encode(sentences, convert_to_numpy=True)
    embedder = SentenceEmbedder(str(st_folder))
    assert embedder.config.max_seq_length == 12 and embedder.config.normalize
    ours = embedder.encode(sentences)
    assert ours.shape == reference.shape == (4, 32)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
