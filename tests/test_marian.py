"""Marian parity with transformers: shared or separate vocabularies, tied or untied heads, sinusoidal positions,
scale_embedding, final_logits_bias, loss, save round trip, partition rules, and generate() token-exact."""

from __future__ import annotations

import json

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


@pytest.mark.mesh
def test_partition_rules_cover_every_class_and_shard_exactly(checkpoints):
    from fxformers.sharding import check_rules, create_mesh, param_shardings

    for name in CONFIGS:  # the rules are built from the config: check each config over both classes
        config = fxformers.MarianConfig(**{**SMALL, **CONFIGS[name]})
        shapes = {}
        for cls in (fxformers.MarianModel, fxformers.MarianMTModel):
            shapes.update(param_shapes(cls, config))
        check_rules(fxformers.MarianMTModel.partition_rules(config), shapes, what="Marian", allow_unused=False)
    if len(jax.devices()) < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 for the sharded comparison")
    from fxformers.sharding import create_mesh

    model = fxformers.MarianMTModel.from_pretrained(checkpoints["separate-vocab"][0])
    rules = model.partition_rules(model.config)
    sharded = jax.device_put(model.params, param_shardings(rules, model.params, create_mesh(data=2, fsdp=2, model=2)))
    inputs, _ = batch("separate-vocab")
    assert rel(model(**inputs, params=sharded).logits, model(**inputs).logits) < 1e-5


# -- tokenizer and translation pipeline ----------------------------------------------------------------------------
CORPUS = [
    "Hello world!",
    "Café naïve résumé Ångström façade — déjà vu.",
    "I ❤️ emoji 🙂🚀👍🏽 and flags 🇫🇷",
    "Visit https://example.com/path?q=1&r=2 or mail me@example.org",
    "Numbers: 3.14159, 1,000,000 and -42 in 2024",
    "  leading and   runs   of\twhitespace \n newline  ",
    "",
    " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 6),
    "don't won't I'm you're they've",
    "UPPER lower MiXeD",
    ">>fra<< the cat sat on the mat",
    "the cat </s> sat",
]
SOURCE_TEXT = CORPUS[:6] + ["the cat sat on the mat while the dog barked at the mailman",
                            "tokenizers split text into tokens and map the tokens to ids"]
TARGET_TEXT = ["le chat est assis sur le tapis", "les modèles lisent des nombres et pas des mots",
               "bonjour le monde, déjà vu à la rivière"]


@pytest.fixture(scope="module")
def opus_folder(tmp_path_factory):
    """An opus-mt style folder: source.spm and target.spm trained here, vocab.json the union of their pieces (with
    a language code), a tiny MarianMTModel over it, saved by transformers."""
    spm = pytest.importorskip("sentencepiece")
    root = tmp_path_factory.mktemp("opus")
    models = {}
    for side, lines, size in (("source", SOURCE_TEXT * 3, 150), ("target", TARGET_TEXT * 3, 60)):
        text = root / f"{side}.txt"
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / side), vocab_size=size,
                                       character_coverage=1.0, model_type="unigram", minloglevel=2,
                                       hard_vocab_limit=False, num_threads=1, unk_id=1, eos_id=0, bos_id=-1)
        models[side] = root / f"{side}.model"
    vocab = {"</s>": 0, "<unk>": 1, ">>fra<<": 2}
    for side in ("source", "target"):
        proc = spm.SentencePieceProcessor(model_file=str(models[side]))
        for i in range(proc.get_piece_size()):
            vocab.setdefault(proc.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    folder = root / "model"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tok = transformers.MarianTokenizer(source_spm=str(models["source"]), target_spm=str(models["target"]),
                                       vocab=str(folder / "vocab.json"))
    tok.save_pretrained(folder)
    config = transformers.MarianConfig(**{**SMALL, **CONFIGS["opus-mt"], "vocab_size": len(vocab),
                                          "pad_token_id": vocab["<pad>"], "decoder_start_token_id": vocab["<pad>"]})
    torch.manual_seed(5)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.model.shared.weight.mul_(6.0)
    model.save_pretrained(folder)
    return folder


def test_tokenizer_is_byte_exact(opus_folder):
    ref = transformers.MarianTokenizer.from_pretrained(opus_folder)
    ours = fxformers.AutoTokenizer.from_pretrained(opus_folder)
    assert type(ours).__name__ == "MarianTokenizer"
    for text in CORPUS:
        assert ours(text)["input_ids"] == ref(text)["input_ids"], text
    batch_ref = ref(CORPUS, padding=True, truncation=True, max_length=16)
    batch_ours = ours(CORPUS, padding=True, truncation=True, max_length=16)
    assert batch_ours["input_ids"] == batch_ref["input_ids"]
    assert batch_ours["attention_mask"] == batch_ref["attention_mask"]
    ids = ref(SOURCE_TEXT[6:])["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)


def test_translation_pipeline_matches_generate(opus_folder):
    from fxformers.pipelines import pipeline

    texts = ["the cat sat on the mat", "Hello world!"]
    ref_tok = transformers.MarianTokenizer.from_pretrained(opus_folder)
    ref_model = transformers.MarianMTModel.from_pretrained(opus_folder).eval()
    enc = ref_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = ref_model.generate(**enc, max_new_tokens=8, num_beams=2)
    expected = [{"translation_text": t} for t in ref_tok.batch_decode(out, skip_special_tokens=True)]
    pipe = pipeline("translation", model=str(opus_folder))
    assert pipe(texts, max_new_tokens=8, num_beams=2) == expected
