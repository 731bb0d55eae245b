"""Encoder pipelines (text-classification, ner, question-answering, fill-mask, feature-extraction) on tiny random
MPNet and ModernBERT checkpoints, against transformers' pipelines (labels, words, offsets and answers exact,
scores within 1e-4). The folders carry the MiniLM WordPiece tokenizer; both models ignore its token_type_ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fxformers.testing_assets import minilm_path
from pipeline_helpers import NER_LABELS, TOKENIZER_FILES, assert_all_cases_match

FAMILIES = {
    "mpnet": ("MPNet", dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=128, initializer_range=0.3)),
    "modernbert": ("ModernBert", dict(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                      intermediate_size=40, local_attention=8, max_position_embeddings=128,
                                      pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101,
                                      eos_token_id=102, initializer_range=0.3)),
}
HEADS = {"cls": "ForSequenceClassification", "ner": "ForTokenClassification", "mlm": "ForMaskedLM",
         "qa": "ForQuestionAnswering", "base": "Model"}


def tiny(folder: Path, family: str, head: str, seed: int, **extra) -> str:
    import torch
    import transformers

    prefix, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    config = getattr(transformers, prefix + "Config")(**{**kwargs, **extra})
    getattr(transformers, prefix + head)(config).eval().save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc2-pipelines")
    out = {}
    for family in FAMILIES:
        for short, head in HEADS.items():
            extra = {}
            if short == "cls":
                extra = dict(id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
            if short == "ner":
                extra = dict(id2label=dict(enumerate(NER_LABELS)), label2id={l: i for i, l in enumerate(NER_LABELS)})
            out[family, short] = tiny(root / f"{family}-{short}", family, head, seed=len(out), **extra)
    return out


def test_pipelines_match_transformers(models):
    # against Transformers 5's pipelines: its MPNet/ModernBERT drop the BERT tokenizer's token_type_ids (4.x fails)
    text = "Hugging Face Inc. is a company based in New York City."
    cases = {}
    for family in FAMILIES:
        m = lambda short: models[family, short]
        cases.update({
            f"{family}-tc": dict(task="text-classification", model=m("cls"), args=[["I love it!", "Terrible."]], v5_only=True),
            f"{family}-ner": dict(task="ner", model=m("ner"), args=[text], kwargs={"ignore_labels": []}, v5_only=True),
            f"{family}-fm": dict(task="fill-mask", model=m("mlm"), args=["Paris is the [MASK] of France."],
                                 kwargs={"top_k": 3}, v5_only=True),
            f"{family}-fe": dict(task="feature-extraction", model=m("base"), args=["Hello world, hello JAX."], v5_only=True),
        })
    assert_all_cases_match(cases)


def test_question_answering_runs(models):
    """Transformers 5 dropped this pipeline (its parity is checked against 4.x where .venv4 exists, for BERT)."""
    from pipeline_helpers import cached_pipeline

    context = "The Amazon rainforest covers much of the Amazon basin of South America. Hugging Face is in Brooklyn."
    for family in FAMILIES:
        out = cached_pipeline("question-answering", models[family, "qa"])(
            question="Where is Hugging Face?", context=context, top_k=2)
        assert len(out) == 2 and all(set(a) == {"score", "start", "end", "answer"} for a in out)
        assert all(context[a["start"]:a["end"]] == a["answer"] and 0 <= a["score"] <= 1 for a in out)
