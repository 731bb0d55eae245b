"""A script written for PyTorch transformers runs with only its import changed (issue #17's acceptance).

The same script text runs twice in fresh processes: once with ``import transformers as T`` (the reference) and once
with ``import fxformers as T``. It loads, tokenizes, calls ``model.eval()``, runs a forward pass with
``return_dict=False``, fine-tunes with a *relative* ``output_dir``, callbacks and ``load_best_model_at_end``, streams a
generation and samples after ``set_seed``. Both runs must finish; the fxformers forward must equal the PyTorch one.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import {module} as T

    classifier, lm = sys.argv[1], sys.argv[2]
    tok = T.AutoTokenizer.from_pretrained(classifier)
    model = T.AutoModelForSequenceClassification.from_pretrained(classifier)
    model.eval()
    batch = tok(["a short text", "another, longer text here"], padding=True, return_tensors="np")
    logits, = model(**{{k: {to_tensor}(v) for k, v in batch.items()}}, return_dict=False)
    out = {{"logits": np.asarray({to_numpy}(logits)).tolist()}}

    rows = [dict(tok(t), label=i % 2) for i, t in enumerate(["good", "bad", "fine film", "awful", "ok", "meh"] * 4)]
    args = T.TrainingArguments(output_dir="out", per_device_train_batch_size=4, max_steps=6, learning_rate=1e-3,
                               eval_strategy="steps", eval_steps=2, save_steps=2, logging_steps=2,
                               load_best_model_at_end=True, metric_for_best_model="loss", report_to="none",
                               save_total_limit=2, disable_tqdm=True)
    trainer = T.Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:8], processing_class=tok,
                        callbacks=[T.EarlyStoppingCallback(early_stopping_patience=5)])
    result = trainer.train()
    out["steps"] = result.global_step

    gen_tok = T.AutoTokenizer.from_pretrained(lm)
    gen = T.AutoModelForCausalLM.from_pretrained(lm)
    prompt = gen_tok(["hello there"], return_tensors="np")
    streamer = T.TextStreamer(gen_tok)
    gen.generate(**{{k: {to_tensor}(v) for k, v in prompt.items()}}, max_new_tokens=4, do_sample=False,
                 streamer=streamer, pad_token_id=0)
    T.set_seed(0)
    first = np.asarray(gen.generate(**{{k: {to_tensor}(v) for k, v in prompt.items()}}, max_new_tokens=6,
                                    do_sample=True, top_k=0, pad_token_id=0))
    second = np.asarray(gen.generate(**{{k: {to_tensor}(v) for k, v in prompt.items()}}, max_new_tokens=6,
                                     do_sample=True, top_k=0, pad_token_id=0))
    T.set_seed(0)
    again = np.asarray(gen.generate(**{{k: {to_tensor}(v) for k, v in prompt.items()}}, max_new_tokens=6,
                                    do_sample=True, top_k=0, pad_token_id=0))
    out["fresh_draws"] = first.shape != second.shape or bool((first != second).any())
    out["reproducible"] = first.shape == again.shape and bool((first == again).all())
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import torch
    import transformers

    root = tmp_path_factory.mktemp("script")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a short text another , longer here good bad fine film awful ok meh".split()
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    torch.manual_seed(0)
    classifier = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32))
    classifier.save_pretrained(root / "classifier")
    tok.save_pretrained(root / "classifier")
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    vocab = {chr(c): i for i, c in enumerate(range(ord("a"), ord("z") + 1))}
    vocab.update({"Ġ": len(vocab), "<|endoftext|>": len(vocab) + 1})
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    lm_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=1, n_head=2,
                                                              n_positions=32, bos_token_id=len(vocab) - 1,
                                                              eos_token_id=len(vocab) - 1))
    lm.save_pretrained(root / "lm")
    lm_tok.save_pretrained(root / "lm")
    return root


def run(module: str, folders: Path, workdir: Path) -> dict:
    torch_side = module == "transformers"
    script = SCRIPT.format(module=module, to_tensor="__import__('torch').tensor" if torch_side else "",
                           to_numpy="(lambda t: t.detach())" if torch_side else "")
    workdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", script, str(folders / "classifier"), str(folders / "lm")],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{module}:\n{proc.stderr[-4000:]}"
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    assert (workdir / "out").is_dir()  # the relative output_dir, where the checkpoints went
    return result


def test_a_pytorch_script_runs_with_only_the_import_changed(folders, tmp_path):
    reference = run("transformers", folders, tmp_path / "pt")
    ours = run("fxformers", folders, tmp_path / "fx")
    np.testing.assert_allclose(ours["logits"], reference["logits"], rtol=1e-5, atol=1e-5)
    assert ours["steps"] == reference["steps"] == 6
    assert ours["fresh_draws"] and ours["reproducible"]
