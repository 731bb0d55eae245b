"""The `fxformers` command, run as `python -m fxformers ...` in a subprocess on local model folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fxformers.testing_assets import minilm_path



REPO = Path(__file__).resolve().parent.parent
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def fxformers(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fxformers", *args], capture_output=True, text=True,
                          env=full_env, timeout=600, cwd=str(REPO))


@pytest.fixture(scope="session")
def sentiment_folder(tmp_path_factory):
    """A tiny random BERT sentiment model written by fxformers itself (no torch), with the MiniLM tokenizer."""
    from fxformers.models.bert.configuration import BertConfig
    from fxformers.models.bert.modeling import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cli-sentiment")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=0.3,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"})
    BertForSequenceClassification.from_config(config, seed=3).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_path() / name, folder / name)
    return folder


def test_env():
    proc = fxformers("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["fxformers"] and info["jax"] != "not installed" and info["devices"]


def test_pipeline_json_matches_the_python_api(sentiment_folder):
    from fxformers.pipelines import pipeline

    proc = fxformers("pipeline", "sentiment-analysis", "I love this!", "I hate this.", "--model", str(sentiment_folder), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    expected = pipeline("sentiment-analysis", model=str(sentiment_folder))(["I love this!", "I hate this."])
    assert [r["label"] for r in result] == [e["label"] for e in expected]
    np.testing.assert_allclose([r["score"] for r in result], [e["score"] for e in expected], atol=1e-6)


def test_pipeline_readable_output_and_options(sentiment_folder):
    proc = fxformers("pipeline", "text-classification", "What a day", "--model", str(sentiment_folder), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "> What a day"
    assert len(lines) == 3 and all("label=" in line and "score=" in line for line in lines[1:])


def test_feature_extraction_on_minilm():
    proc = fxformers("pipeline", "feature-extraction", "hello world", "--model", str(minilm_path()))
    assert proc.returncode == 0, proc.stderr
    assert "features of shape (1, 4, 384)" in proc.stdout


def test_offline_default_model_error(tmp_path):
    proc = fxformers("pipeline", "sentiment-analysis", "hi", env={"HF_HUB_CACHE": str(tmp_path)})
    assert proc.returncode == 1
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english" in proc.stderr
    assert "--model /path/to/folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_convert_pytorch_bin_to_safetensors(tmp_path):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=24, max_position_embeddings=32)
    source = tmp_path / "bin"
    torch_model = transformers.BertForMaskedLM(cfg).eval()
    source.mkdir()
    cfg.architectures = ["BertForMaskedLM"]
    cfg.save_pretrained(source)
    torch.save(torch_model.state_dict(), source / "pytorch_model.bin")
    dest = tmp_path / "converted"
    proc = fxformers("convert", str(source), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "model.safetensors").is_file() and "BertForMaskedLM" in proc.stdout
    back = transformers.BertForMaskedLM.from_pretrained(dest).eval()  # loads with no flags
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        np.testing.assert_allclose(back(ids).logits.numpy(), torch_model(ids).logits.numpy(), atol=1e-6)
