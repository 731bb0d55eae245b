"""Encoder pipelines against transformers' pipelines (4.x) on tiny random BERT checkpoints with the MiniLM
WordPiece tokenizer: labels, words, offsets and answers exact, scores within 1e-4, same single-vs-list shapes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_helpers import NER_LABELS, assert_all_cases_match, assert_same, cached_pipeline, plain, tiny_bert



LONG_CONTEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin covers seven million "
    "square kilometres, of which five and a half million are covered by the rainforest. The region includes "
    "territory belonging to nine nations. The majority of the forest is contained within Brazil, with sixty "
    "percent of the rainforest, followed by Peru and Colombia. Hugging Face is based in Brooklyn, New York."
)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-models")
    return {
        "cls": str(tiny_bert(root / "cls", "BertForSequenceClassification", seed=1,
                             id2label={0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"})),
        "ner": str(tiny_bert(root / "ner", "BertForTokenClassification", seed=2,
                             id2label=dict(enumerate(NER_LABELS)))),
        "mlm": str(tiny_bert(root / "mlm", "BertForMaskedLM", seed=3)),
        "qa": str(tiny_bert(root / "qa", "BertForQuestionAnswering", seed=4)),
        "nli": str(tiny_bert(root / "nli", "BertForSequenceClassification", seed=5,
                             id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})),
        "base": str(tiny_bert(root / "base", "BertModel", seed=6)),
    }


def build_cases(m: dict) -> dict[str, dict]:
    texts = ["I love this movie so much!", "This was terrible.", "An okay film, with a long and winding plot."]
    ner_text = "Hugging Face Inc. is a company based in New York City. Its headquarters are in DUMBO, Brooklynnnn."
    cases = {
        # feature-extraction
        "fe-single": dict(task="feature-extraction", model=m["base"], args=["Hello world, hello JAX."], v5_ok=True),
        "fe-list": dict(task="feature-extraction", model=m["base"], args=[texts], v5_ok=True),
        # text-classification
        "tc-single": dict(task="text-classification", model=m["cls"], args=[texts[0]]),
        "tc-list": dict(task="sentiment-analysis", model=m["cls"], args=[texts]),
        "tc-topk2": dict(task="text-classification", model=m["cls"], args=[texts[0]], kwargs={"top_k": 2}),
        "tc-topk-none": dict(task="text-classification", model=m["cls"], args=[texts], kwargs={"top_k": None}),
        "tc-sigmoid": dict(task="text-classification", model=m["cls"], args=[texts],
                           kwargs={"function_to_apply": "sigmoid", "top_k": 1}),
        "tc-none": dict(task="text-classification", model=m["cls"], args=[texts[1]], kwargs={"function_to_apply": "none"}),
        "tc-pair": dict(task="text-classification", model=m["cls"],
                        args=[{"text": "A man eats.", "text_pair": "Someone is eating."}]),
        "tc-init-topk": dict(task="text-classification", model=m["cls"], init={"top_k": 3}, args=[texts[:2]]),
        # token-classification
        "ner-none": dict(task="ner", model=m["ner"], args=[ner_text], kwargs={"ignore_labels": []}),
        "ner-default": dict(task="token-classification", model=m["ner"], args=[[ner_text, "John lives in Paris."]]),
        "ner-stride": dict(task="ner", model=m["ner"], tokenizer={"model_max_length": 16}, args=[ner_text],
                           kwargs={"stride": 4, "aggregation_strategy": "first", "ignore_labels": []}),
        "ner-split": dict(task="ner", model=m["ner"], args=[["Hugging", "Face", "lives", "in", "Brooklynnnn"]],
                          kwargs={"is_split_into_words": True, "ignore_labels": [], "aggregation_strategy": "simple"}),
        # fill-mask
        "fm-single": dict(task="fill-mask", model=m["mlm"], args=["Paris is the [MASK] of France."]),
        "fm-topk": dict(task="fill-mask", model=m["mlm"], args=["The man worked as a [MASK]."], kwargs={"top_k": 3}),
        "fm-targets": dict(task="fill-mask", model=m["mlm"], args=["The man worked as a [MASK]."],
                           kwargs={"targets": ["carpenter", "doctor", "nurse"]}),
        "fm-two-masks": dict(task="fill-mask", model=m["mlm"], args=["The [MASK] sat on the [MASK]."], kwargs={"top_k": 2}),
        "fm-list": dict(task="fill-mask", model=m["mlm"], args=[["A [MASK] day.", "Hello [MASK]!"]], kwargs={"top_k": 2}),
        "fm-list-one": dict(task="fill-mask", model=m["mlm"], args=[["A [MASK] day."]], kwargs={"top_k": 2}),
        # question-answering
        "qa-simple": dict(task="question-answering", model=m["qa"],
                          kwargs={"question": "Where is Hugging Face based?", "context": LONG_CONTEXT[-120:]}),
        "qa-topk": dict(task="question-answering", model=m["qa"],
                        kwargs={"question": "Which nations?", "context": LONG_CONTEXT, "top_k": 3}),
        "qa-windows": dict(task="question-answering", model=m["qa"],
                           kwargs={"question": "Which country has most of the forest?", "context": LONG_CONTEXT,
                                   "max_seq_len": 32, "doc_stride": 8, "top_k": 2}),
        "qa-impossible": dict(task="question-answering", model=m["qa"],
                              kwargs={"question": "What is it?", "context": LONG_CONTEXT[:150],
                                      "handle_impossible_answer": True, "top_k": 2}),
        "qa-answer-len": dict(task="question-answering", model=m["qa"],
                              kwargs={"question": "What covers the basin?", "context": LONG_CONTEXT[:200],
                                      "max_answer_len": 3, "align_to_words": False}),
        "qa-list": dict(task="question-answering", model=m["qa"],
                        kwargs={"question": ["Where?", "How large is the basin?"], "context": LONG_CONTEXT[:220]}),
        "qa-dict": dict(task="question-answering", model=m["qa"],
                        args=[{"question": "Which nations?", "context": LONG_CONTEXT[:200]}]),
        # zero-shot-classification
        "zs-simple": dict(task="zero-shot-classification", model=m["nli"],
                          args=["The new phone has a great camera.", ["technology", "sports", "politics"]]),
        "zs-string-labels": dict(task="zero-shot-classification", model=m["nli"],
                                 args=["We won the final!"], kwargs={"candidate_labels": "sports, cooking"}),
        "zs-multi": dict(task="zero-shot-classification", model=m["nli"], args=["I cook pasta at home."],
                         kwargs={"candidate_labels": ["cooking", "travel", "home"], "multi_label": True}),
        "zs-one-label": dict(task="zero-shot-classification", model=m["nli"], args=["It rains."],
                             kwargs={"candidate_labels": ["weather"]}),
        "zs-template": dict(task="zero-shot-classification", model=m["nli"], args=[["A goal.", "A vote."]],
                            kwargs={"candidate_labels": ["sports", "politics"], "hypothesis_template": "This text is about {}."}),
    }
    for name in cases:
        if name.startswith(("tc-", "ner-", "fm-", "zs-")):
            cases[name].setdefault("v5_ok", True)
    return cases


@pytest.fixture(scope="session")
def cases(models):
    return build_cases(models)


def test_matches_transformers(cases):
    """Every case against transformers' pipeline; one test (so that one xdist worker runs the single reference
    subprocess), reporting every mismatching case at once."""
    assert_all_cases_match(cases)


def test_results_do_not_depend_on_batch_size(models):
    texts = ["short", "a somewhat longer sentence than the first one", "mid length text here", "x " * 20, "end."]
    for task, model in (("text-classification", models["cls"]), ("ner", models["ner"])):
        pipe = cached_pipeline(task, model)
        one = plain(pipe(texts, batch_size=1, **({"ignore_labels": []} if task == "ner" else {})))
        assert_same(pipe(texts, batch_size=4, **({"ignore_labels": []} if task == "ner" else {})), one, atol=1e-5)
    qa = cached_pipeline("question-answering", models["qa"])
    kwargs = dict(question="Which country?", context=LONG_CONTEXT, max_seq_len=32, doc_stride=8, top_k=3)
    assert_same(qa(**kwargs, batch_size=4), plain(qa(**kwargs, batch_size=1)), atol=1e-5)


def test_padded_shapes_are_bucketed(models):
    """A stream of different lengths compiles only a few shapes: lengths and rows are bucketed."""
    from fxformers.pipelines import bucket_length, bucket_rows, pipeline

    assert [bucket_length(n) for n in (1, 16, 17, 33, 100)] == [16, 16, 32, 64, 128]
    assert bucket_length(300, limit=256) == 300 and bucket_length(200, limit=128) == 200
    assert bucket_length(120, limit=128) == 128
    assert [bucket_rows(n, 8) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]

    compiled = cached_pipeline("text-classification", models["cls"])
    pipe = pipeline("text-classification", model=compiled.model, tokenizer=compiled.tokenizer)  # its own spy
    shapes = set()
    original = pipe._forward

    def spy(batch, **kw):
        shapes.add(batch["input_ids"].shape)
        return original(batch, **kw)

    pipe._forward = spy
    pipe([("word " * n).strip() for n in range(1, 30, 4)], batch_size=4)  # 3 to 31 tokens
    assert shapes == {(4, 16), (4, 32)}, shapes


def test_generator_input_gives_a_generator(models):
    pipe = cached_pipeline("text-classification", models["cls"])
    texts = ["good", "bad", "fine"]
    streamed = list(pipe((t for t in texts), batch_size=2))
    assert_same(streamed, plain(pipe(texts)))


def test_model_object_and_tokenizer(models):
    from fxformers import AutoTokenizer
    from fxformers.pipelines import pipeline

    by_path = cached_pipeline("text-classification", models["cls"])
    by_object = pipeline("sentiment-analysis", model=by_path.model, tokenizer=AutoTokenizer.from_pretrained(models["cls"]))
    assert_same(by_object("Great!"), plain(by_path("Great!")), atol=1e-6)
    inferred = pipeline(model=models["ner"])  # task from config.json's architectures
    assert inferred.task == "token-classification"


def test_errors_say_what_to_do(models, monkeypatch, tmp_path):
    from fxformers.pipelines import pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(OSError) as info:
        pipeline("sentiment-analysis")
    message = str(info.value)
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english" in message
    assert "model='/path/to/folder'" in message
    with pytest.raises(KeyError, match="Unknown task"):
        pipeline("no-such-task", model=models["cls"])
    with pytest.raises(ValueError, match="mask_token"):
        cached_pipeline("fill-mask", models["mlm"])("no mask here")
    with pytest.raises(ValueError, match="at least one label"):
        cached_pipeline("zero-shot-classification", models["nli"])("text", candidate_labels=[])


def test_feature_extraction_tensors(models):
    pipe = cached_pipeline("feature-extraction", models["base"])
    out = pipe("Hello world", return_tensors=True)
    assert isinstance(out, np.ndarray) and out.shape[0] == 1 and out.shape[2] == 32
    np.testing.assert_allclose(out, np.array(pipe("Hello world")), atol=1e-6)
