"""A Transformers script runs unchanged: relative output_dir, jit/grad through model(...), return_dict, keyword
checking (unknown -> TypeError, PyTorch-only -> ignored, never saved), torch_dtype, the library key for sampling,
an unreachable hub, and the PyTorch habits (eval/train/to/device/embeddings, set_seed, logging)."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.hub import ModelNotFoundError

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=24)
GPT2 = dict(vocab_size=101, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=100,
            pad_token_id=100)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **SMALL)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(bert_dir):
    return fxformers.BertForSequenceClassification.from_pretrained(bert_dir)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).save_pretrained(folder)
    return folder


def ids(shape=(2, 6), high=99):
    return np.random.RandomState(0).randint(0, high, shape)


# -- 1: relative output_dir: see tests/test_trainer_habits.py (one Trainer run checks it with the callbacks)


# -- 2: jit and grad through model(...) ---------------------------------------------------------------------------
def test_jit_and_grad_through_the_model_call(bert):
    batch = {"input_ids": ids(), "attention_mask": np.ones((2, 6), np.int32)}
    eager = bert(**batch).logits
    jitted = jax.jit(lambda m, b: m(**b).logits)(bert, batch)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    grads = jax.jit(jax.grad(lambda m, b: m(**b, labels=jnp.array([0, 2])).loss))(bert, batch)
    assert type(grads) is type(bert) and np.isfinite(grads.params["classifier"]["kernel"]).all()
    with pytest.raises(ValueError, match="longer than"):  # static checks still apply inside a trace
        jax.jit(lambda m, b: m(input_ids=b).logits)(bert, np.zeros((1, 30), np.int32))


# -- 3: keywords ----------------------------------------------------------------------------------------------------
def test_return_dict_false_gives_a_tuple_like_transformers(bert, bert_dir):
    x, labels = ids(), np.array([0, 2])
    loss, logits = bert(input_ids=x, labels=labels, return_dict=False)
    ref = transformers.BertForSequenceClassification.from_pretrained(bert_dir).eval()
    ref_loss, ref_logits = ref(input_ids=torch.tensor(x), labels=torch.tensor(labels), return_dict=False)
    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(ref_loss.detach().item(), rel=1e-5)
    (only,) = bert(input_ids=x, return_dict=False)
    assert only.shape == (2, 3)


def test_unknown_keyword_raises_like_transformers(bert_dir):
    with pytest.raises(TypeError, match="num_label"):
        transformers.AutoModelForSequenceClassification.from_pretrained(bert_dir, num_label=5)
    with pytest.raises(TypeError, match="num_label.*num_labels"):
        fxformers.AutoModelForSequenceClassification.from_pretrained(bert_dir, num_label=5)
    with pytest.raises(TypeError, match="num_label"):
        fxformers.BertForSequenceClassification.from_pretrained(bert_dir, num_label=5)
    # config fields pass through, as in Transformers
    model = fxformers.AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=3, hidden_dropout_prob=0.2)
    assert model.config.num_labels == 3 and model.config.hidden_dropout_prob == 0.2


def test_pytorch_only_keywords_are_ignored_logged_and_never_saved(bert_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fxformers"):
        model = fxformers.AutoModelForSequenceClassification.from_pretrained(
            bert_dir, device_map="auto", low_cpu_mem_usage=True, attn_implementation="sdpa", trust_remote_code=True)
    notes = [r.getMessage() for r in caplog.records if "PyTorch-only" in r.getMessage()]
    assert len(notes) == 1 and "device_map" in notes[0] and "trust_remote_code" in notes[0]
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not {"device_map", "low_cpu_mem_usage", "attn_implementation", "trust_remote_code"} & set(saved)
    fxformers.AutoConfig.from_pretrained(bert_dir, trust_remote_code=True)  # accepted there too
    with pytest.raises(NotImplementedError, match="quantization"):
        fxformers.AutoModel.from_pretrained(bert_dir, load_in_8bit=True)


@pytest.mark.parametrize("value", ["bfloat16", torch.bfloat16, jnp.bfloat16, "torch.bfloat16"])
def test_torch_dtype_is_honoured_and_saves(bert_dir, tmp_path, value):
    model = fxformers.AutoModelForSequenceClassification.from_pretrained(bert_dir, torch_dtype=value)
    assert model.dtype == jnp.bfloat16
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree_util.tree_leaves(model.params))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).config.num_labels == 3


def test_torch_dtype_in_a_config_saves_as_a_name(tmp_path):
    config = fxformers.BertConfig(torch_dtype=torch.float16, **SMALL)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"


def test_output_hidden_states_from_the_config(bert_dir):
    model = fxformers.AutoModel.from_pretrained(bert_dir, output_hidden_states=True)
    out = model(input_ids=ids())
    assert out.hidden_states is not None and len(out.hidden_states) == SMALL["num_hidden_layers"] + 1
    assert model(input_ids=ids(), output_hidden_states=False).hidden_states is None
    assert model(input_ids=ids(), use_cache=False).last_hidden_state.shape == (2, 6, 32)


# -- 6: sampling draws fresh keys, reproducible after set_seed -------------------------------------------------------
def test_sampling_twice_differs_and_set_seed_repeats(gpt2_dir):
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    prompt = np.array([[5, 6, 7, 8]])
    kw = dict(do_sample=True, max_new_tokens=12, top_k=0)
    fxformers.set_seed(123)
    first, second = np.asarray(model.generate(prompt, **kw)), np.asarray(model.generate(prompt, **kw))
    assert not np.array_equal(first, second)
    fxformers.set_seed(123)
    np.testing.assert_array_equal(model.generate(prompt, **kw), first)
    np.testing.assert_array_equal(model.generate(prompt, **kw), second)
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(model.generate(prompt, prng_key=key, **kw), model.generate(prompt, prng_key=key, **kw))


# -- 7: unreachable hub ---------------------------------------------------------------------------------------------
def test_unreachable_hub_says_so(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_download(*args, **kwargs):  # what hf_hub_download raises when the connection fails, uncached
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot "
                                      "find the requested files in the local cache.")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_download)
    with pytest.raises(ModelNotFoundError, match="Could not reach the Hugging Face Hub.*HF_HUB_OFFLINE=1"):
        fxformers.AutoModel.from_pretrained("bert-base-uncased")


# -- 8: smaller frictions -------------------------------------------------------------------------------------------
def test_max_length_padding_without_truncation_says_what_to_do():
    from fxformers.testing_assets import minilm_path

    tok = fxformers.AutoTokenizer.from_pretrained(minilm_path())
    texts = ["a b c d e f g h i j", "a"]
    with pytest.raises(ValueError, match="truncation=True"):
        tok(texts, padding="max_length", max_length=4, return_tensors="np")
    ok = tok(texts, padding="max_length", max_length=4, truncation=True, return_tensors="np")
    assert ok["input_ids"].shape == (2, 4)


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory):
    """A DistilBERT sentiment folder whose tokenizer (MiniLM's BERT tokenizer) emits token_type_ids."""
    import shutil

    from fxformers.testing_assets import minilm_path

    folder = tmp_path_factory.mktemp("distilbert")
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=4, hidden_dim=37,
                                           max_position_embeddings=64)
    transformers.DistilBertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path() / name, folder / name)
    return folder


def test_distilbert_ignores_token_type_ids_like_transformers(distilbert_dir):
    tok = fxformers.AutoTokenizer.from_pretrained(distilbert_dir)
    batch = tok(["I love this!", "Not at all."], padding=True, return_tensors="np")
    assert "token_type_ids" in batch
    model = fxformers.AutoModelForSequenceClassification.from_pretrained(distilbert_dir)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(distilbert_dir).eval()
    with torch.no_grad():
        expected = ref(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(model(**batch).logits, expected, rtol=1e-5, atol=1e-6)
    classifier = fxformers.pipeline("text-classification", model=str(distilbert_dir))
    assert classifier(["I love this!"])[0]["label"] in ("LABEL_0", "LABEL_1")


def test_float16_on_cpu_is_a_clear_error(bert_dir):
    model = fxformers.AutoModel.from_pretrained(bert_dir, dtype="float16")
    with pytest.raises(ValueError, match="float16.*CPU.*bfloat16"):
        model(input_ids=ids())
    assert model.to(jnp.float32)(input_ids=ids()).last_hidden_state.dtype == jnp.float32


def test_cli_accepts_both_spellings_and_version(capsys):
    from fxformers.cli import _dashed, build_parser, main

    parser = build_parser()
    for spelling in ("--aggregation_strategy", "--aggregation-strategy"):
        args, extra = parser.parse_known_args(_dashed(["pipeline", "ner", "x", spelling, "simple"], parser))
        assert args.aggregation_strategy == "simple" and not extra
    args, _ = parser.parse_known_args(_dashed(["pipeline", "ner", "x", "--max_new_tokens=3"], parser))
    assert args.max_new_tokens == 3
    # train overrides keep their spelling (they name config fields)
    assert _dashed(["train", "c.yaml", "--learning_rate", "1"], parser)[2] == "--learning_rate"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and fxformers.__version__ in capsys.readouterr().out


# -- 4: PyTorch habits ------------------------------------------------------------------------------------------------
def test_eval_train_to_device_and_input_embeddings(bert, bert_dir):
    x = ids()
    model = fxformers.BertForSequenceClassification(bert.config, bert.params)
    assert model.eval() is model and not model.training
    eval_logits = model(input_ids=x).logits
    model.train()
    fxformers.set_seed(0)
    a = model(input_ids=x).logits  # dropout on, keys from the library key
    b = model(input_ids=x).logits
    assert not np.allclose(a, b)
    fxformers.set_seed(0)
    np.testing.assert_array_equal(model(input_ids=x).logits, a)
    np.testing.assert_array_equal(model.eval()(input_ids=x).logits, eval_logits)
    assert model.device == jax.devices()[0]
    assert model.to("cpu").device.platform == "cpu" and model.to(jax.devices()[0]) is model
    ref = transformers.BertForSequenceClassification.from_pretrained(bert_dir)
    np.testing.assert_array_equal(model.get_input_embeddings(), ref.get_input_embeddings().weight.detach().numpy())
    model.set_input_embeddings(np.zeros((99, 32), np.float32))
    assert not np.asarray(model.get_input_embeddings()).any()
    with pytest.raises(ValueError, match="no gpu device|no cuda device"):
        if jax.default_backend() == "cpu":
            model.to("cuda")
        else:
            raise ValueError("no gpu device (skipped on an accelerator)")


def test_logging_verbosity_helpers(caplog):
    from fxformers import logging as fx_logging

    root = logging.getLogger("fxformers")
    saved = (root.level, root.propagate, list(root.handlers))
    try:
        fx_logging.set_verbosity_info()
        assert fx_logging.get_verbosity() == fx_logging.INFO
        fx_logging.enable_propagation()  # let caplog see the records
        with caplog.at_level(logging.INFO):
            fxformers.AutoConfig.from_pretrained  # noqa: B018 (import cost only)
            logging.getLogger("fxformers.modeling").info("visible at info")
        assert "visible at info" in caplog.text
        fx_logging.set_verbosity_error()
        assert fx_logging.get_verbosity() == fx_logging.ERROR
    finally:
        root.setLevel(saved[0])
        root.propagate = saved[1]
        root.handlers[:] = saved[2]


def test_text_streamers_match_transformers(tmp_path):
    import threading

    from fxformers.testing_assets import minilm_path

    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=30522, n_embd=16, n_layer=1, n_head=2, n_positions=32, eos_token_id=102, bos_token_id=101,
    )).save_pretrained(tmp_path)
    tok = fxformers.AutoTokenizer.from_pretrained(minilm_path())
    ref_tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    ids = tok(["hello world"], return_tensors="np", add_special_tokens=False)["input_ids"]

    chunks, ref_chunks = [], []

    class Recorder(fxformers.TextStreamer):
        def on_finalized_text(self, text, stream_end=False):
            chunks.append((text, stream_end))

    class RefRecorder(transformers.TextStreamer):
        def on_finalized_text(self, text, stream_end=False):
            ref_chunks.append((text, stream_end))

    model = fxformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    out = model.generate(ids, max_new_tokens=6, pad_token_id=0, streamer=Recorder(tok))
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    ref.generate(torch.tensor(ids), max_new_tokens=6, pad_token_id=0, do_sample=False, streamer=RefRecorder(ref_tok))
    assert chunks == ref_chunks and len(chunks) == 8  # prompt, 6 steps, end
    streamer = fxformers.TextIteratorStreamer(tok, skip_prompt=True)
    thread = threading.Thread(target=model.generate, args=(ids,), kwargs=dict(max_new_tokens=6, pad_token_id=0,
                                                                                streamer=streamer))
    thread.start()
    assert "".join(streamer) == tok.decode(np.asarray(out)[0, ids.shape[1]:])
    thread.join()
    with pytest.raises(ValueError, match="batch size 1"):
        model.generate(np.concatenate([ids, ids]), max_new_tokens=2, streamer=Recorder(tok))


# -- 9: bucketed model(...) shapes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["BertModel", "BertForTokenClassification", "BertForQuestionAnswering",
                                  "BertForMultipleChoice", "BertForSequenceClassification"])
def test_bucketed_calls_give_the_same_values(bert_dir, head):
    model = getattr(fxformers, head).from_pretrained(bert_dir, ignore_mismatched_sizes=True)
    x = ids((2, 3, 7) if "MultipleChoice" in head else (2, 7))
    mask = np.ones_like(x)
    mask[..., 0, 5:] = 0
    kw = dict(output_hidden_states=True, output_attentions=True)
    if head == "BertForTokenClassification":
        kw["labels"] = np.where(mask == 1, x % 2, -100)
    if head == "BertForQuestionAnswering":  # the loss is a softmax over positions: such calls run unbucketed
        kw.update(start_positions=np.array([1, 20]), end_positions=np.array([3, 4]))
    bucketed = model(input_ids=x, attention_mask=mask, **kw)
    model.bucket_inputs = False
    exact = model(input_ids=x, attention_mask=mask, **kw)
    assert jax.tree_util.tree_structure(bucketed) == jax.tree_util.tree_structure(exact)
    for a, b in zip(jax.tree_util.tree_leaves(bucketed), jax.tree_util.tree_leaves(exact)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_padding_true_loop_compiles_once_per_bucket(bert):
    from fxformers.modeling import _forward

    model = fxformers.BertForSequenceClassification(bert.config, bert.params)
    rng = np.random.RandomState(0)
    before = _forward._cache_size()
    for length in rng.randint(3, 24, 12):
        model(input_ids=rng.randint(0, 99, (4, length)), attention_mask=np.ones((4, length), np.int32))
    assert _forward._cache_size() - before <= 2  # buckets 16 and 24 (the position limit), not 12 lengths


def test_persistent_compilation_cache_settings(monkeypatch, tmp_path):
    from fxformers import compilation_cache

    script = ("import fxformers, jax\nfrom fxformers.compilation_cache import enable_compilation_cache\n"
              "print(enable_compilation_cache(), jax.config.jax_compilation_cache_dir)")
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    run = lambda **extra: subprocess.run([sys.executable, "-c", script], env={**env, **extra}, capture_output=True,
                                         text=True, check=True).stdout.split()
    assert run(HF_HOME=str(tmp_path)) == [str(tmp_path / "fxformers" / "xla")] * 2  # on by default, in HF_HOME
    assert run(FXFORMERS_COMPILATION_CACHE=str(tmp_path / "mine"))[0] == str(tmp_path / "mine")
    assert run(FXFORMERS_COMPILATION_CACHE="0") == ["None", "None"]
    assert compilation_cache.default_cache_dir().parts[-2:] == ("fxformers", "xla")
