"""Parity of the BERT family (BERT, RoBERTa, XLM-R, DistilBERT) with PyTorch transformers: every head, every
checkpoint format, padded batches, losses, hidden states, attentions, and save_pretrained round trips."""

import numpy as np
import pytest
import torch
import transformers

import fxformers

ARCHS = {
    "Bert": (transformers.BertConfig, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=24)),
    "Roberta": (transformers.RobertaConfig, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=24)),
    "XLMRoberta": (transformers.XLMRobertaConfig, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=24, hidden_act="gelu_new")),
    "DistilBert": (transformers.DistilBertConfig, dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=24, activation="relu")),
}
HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM", "ForMultipleChoice"]
VOCAB = 99


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-12))


def torch_model(arch: str, head: str, seed: int = 0, **overrides):
    config_cls, kwargs = ARCHS[arch]
    config = config_cls(vocab_size=VOCAB, **{**kwargs, **overrides})
    config._attn_implementation = "eager"  # so attentions can be returned
    torch.manual_seed(seed)
    return getattr(transformers, arch + head)(config).eval()


def batch(head: str, seed: int = 0):
    """A padded batch: row 1 is shorter. Pad id 1 for every arch so RoBERTa positions see real padding."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, VOCAB, (2, 9))
    mask = np.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = 1, 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if head == "ForMultipleChoice":
        inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}  # [B, C, T]
    return inputs


def run_torch(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


def output_key(head: str) -> str:
    return {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}.get(head, "logits")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_head_matches_pytorch(tmp_path, arch, head):
    tm = torch_model(arch, head)
    tm.save_pretrained(tmp_path)
    fm = getattr(fxformers, arch + head).from_pretrained(tmp_path)
    inputs = batch(head)
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    assert rel_err(out[output_key(head)], ref[output_key(head)]) < 1e-5
    if head == "ForQuestionAnswering":
        assert rel_err(out.end_logits, ref.end_logits) < 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert rel_err(ours, theirs) < 1e-5
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert rel_err(ours, theirs) < 1e-5


@pytest.mark.parametrize("fmt", ["sharded_safetensors", "bin", "sharded_bin"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_checkpoint_formats(tmp_path, arch, fmt):
    tm = torch_model(arch, "ForSequenceClassification", num_labels=3)
    tm.save_pretrained(tmp_path, safe_serialization=fmt.endswith("safetensors"), max_shard_size="20KB" if "sharded" in fmt else "5GB")
    assert any(p.name.endswith(".index.json") for p in tmp_path.iterdir()) == ("sharded" in fmt)
    fm = fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(fm).__name__ == arch + "ForSequenceClassification"
    inputs = batch("ForSequenceClassification")
    assert rel_err(fm(**inputs).logits, run_torch(tm, inputs).logits) < 1e-5


def test_flax_msgpack_checkpoint(tmp_path):
    """Transformers' legacy Flax layout (kernel/scale/embedding, base model unprefixed) loads to the same model."""
    from flax.serialization import to_bytes

    tm = torch_model("Bert", "Model")
    tm.config.save_pretrained(tmp_path)
    flax_tree: dict = {}
    for key, value in tm.state_dict().items():
        *path, leaf = key.split(".")
        array = value.numpy()
        if leaf == "weight":
            leaf, array = ("embedding", array) if "embeddings" in path[-1] else ("scale", array) if array.ndim == 1 else ("kernel", array.T)
        node = flax_tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = array
    (tmp_path / "flax_model.msgpack").write_bytes(to_bytes(flax_tree))
    fm = fxformers.BertModel.from_pretrained(tmp_path, from_flax=True)
    inputs = batch("Model")
    assert rel_err(fm(**inputs).last_hidden_state, run_torch(tm, inputs).last_hidden_state) < 1e-5


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_pretrained_round_trip_into_transformers(tmp_path, arch):
    for head in HEADS:
        tm = torch_model(arch, head, seed=1)
        fm = getattr(fxformers, arch + head).from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()},
                                                             getattr(fxformers, arch + head).config_class(**tm.config.to_dict()))
        folder = tmp_path / head
        fm.save_pretrained(folder)
        back, info = getattr(transformers, arch + head).from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        inputs = batch(head)
        assert rel_err(run_torch(back.eval(), inputs)[output_key(head)], run_torch(tm, inputs)[output_key(head)]) < 1e-5


def test_sharded_save_loads_in_transformers(tmp_path):
    tm = torch_model("Bert", "ForMaskedLM")
    fm = fxformers.BertForMaskedLM.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()}, fxformers.BertConfig(**tm.config.to_dict()))
    fm.save_pretrained(tmp_path, max_shard_size="30KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    inputs = batch("ForMaskedLM")
    assert rel_err(run_torch(back, inputs).logits, run_torch(tm, inputs).logits) < 1e-5


def test_losses_match_pytorch():
    """Every head's loss on BERT (the loss functions are shared by all encoders; DistilBERT's case is below)."""
    check_losses("Bert")


def test_distilbert_classification_loss_matches_pytorch():
    check_losses("DistilBert", only="ForSequenceClassification")


def check_losses(arch, only=None):
    rng = np.random.RandomState(3)
    cases = {
        "ForSequenceClassification": [
            (dict(num_labels=3), {"labels": rng.randint(0, 3, (2,))}),
            (dict(num_labels=1), {"labels": rng.randn(2).astype(np.float32)}),
            (dict(num_labels=3, problem_type="multi_label_classification"), {"labels": rng.randint(0, 2, (2, 3)).astype(np.float32)}),
        ],
        "ForTokenClassification": [(dict(num_labels=4), {"labels": np.where(batch("Model")["attention_mask"] > 0, rng.randint(0, 4, (2, 9)), -100)})],
        "ForQuestionAnswering": [({}, {"start_positions": np.array([1, 20]), "end_positions": np.array([3, 4])})],
        "ForMaskedLM": [({}, {"labels": np.where(rng.rand(2, 9) < 0.3, rng.randint(0, VOCAB, (2, 9)), -100)})],
        "ForMultipleChoice": [({}, {"labels": np.array([1, 0])})],
    }
    for head, variants in cases.items():
        if only and head != only:
            continue
        for overrides, labels in variants:
            tm = torch_model(arch, head, **overrides)
            fm = getattr(fxformers, arch + head).from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()}, getattr(fxformers, arch + head).config_class(**tm.config.to_dict()))
            inputs = {**batch(head), **labels}
            ref = run_torch(tm, inputs).loss.item()
            assert abs(float(fm(**inputs).loss) - ref) <= 1e-5 * max(1.0, abs(ref)), (head, overrides)


def test_real_minilm_matches_pytorch():
    from fxformers.testing_assets import minilm_path

    path = minilm_path()
    tm = transformers.AutoModel.from_pretrained(path).eval()
    fm = fxformers.AutoModel.from_pretrained(path)
    assert type(fm).__name__ == "BertModel"
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok(["A man is eating food.", "JAX compiles the whole decode loop into one program, which is fast."], padding=True, return_tensors="np")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    ref = run_torch(tm, inputs)
    out = fm(**inputs)
    assert rel_err(out.last_hidden_state, ref.last_hidden_state) < 1e-5
    assert rel_err(out.pooler_output, ref.pooler_output) < 1e-5


def test_bfloat16_is_close_and_logits_are_float32(tmp_path):
    tm = torch_model("Bert", "ForSequenceClassification")
    tm.save_pretrained(tmp_path)
    fm = fxformers.BertForSequenceClassification.from_pretrained(tmp_path, dtype="bfloat16")
    assert fm.params["classifier"]["kernel"].dtype == np.dtype("bfloat16") if hasattr(np, "bfloat16") else True
    out = fm(**batch("ForSequenceClassification"))
    assert out.logits.dtype == np.float32
    assert rel_err(out.logits, run_torch(tm, batch("ForSequenceClassification")).logits) < 5e-2


def test_feed_forward_chunking_is_exact():
    tm = torch_model("Bert", "Model", chunk_size_feed_forward=3)
    fm = fxformers.BertModel.from_state_dict({k: v.numpy() for k, v in tm.state_dict().items()}, fxformers.BertConfig(**tm.config.to_dict()))
    inputs = batch("Model")
    assert rel_err(fm(**inputs).last_hidden_state, run_torch(tm, inputs).last_hidden_state) < 1e-5
