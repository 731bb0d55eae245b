"""LoRA / PEFT interoperability: adapters both ways with PyTorch PEFT (logits to 1e-5), merge_and_unload, trainable
counts, adapters by name, generation, and training only the adapter (optimizer state measured, quantised bases)."""

import io
import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

peft = pytest.importorskip("peft")

import fxformers
from fxformers import LoraConfig, PeftModel, get_peft_model
from fxformers.lora import base_memory_bytes
from fxformers.optimization import create_optimizer
from fxformers.training.steps import make_train_step, optimizer_state_bytes
from fxformers.training.train_state import TrainState

RNG = np.random.default_rng(0)

# family -> (PyTorch model builder, fxformers auto class, PEFT LoraConfig kwargs)
FAMILIES = {
    "llama": (lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)),
        "AutoModelForCausalLM", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])),
    "gpt2": (lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)),
        "AutoModelForCausalLM", dict(r=4, lora_alpha=16, target_modules="all-linear", fan_in_fan_out=True,
                                     use_rslora=True)),
    "bert": (lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, num_labels=3)),
        "AutoModelForSequenceClassification",
        dict(r=4, lora_alpha=8, target_modules=r".*encoder.*\.(query|value|dense)", modules_to_save=["classifier"],
             task_type="SEQ_CLS")),
    "t5": (lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0)),
        "AutoModelForSeq2SeqLM", dict(r=4, lora_alpha=8, target_modules=["q", "v", "wo"])),
}


def inputs(family: str) -> dict:
    ids = RNG.integers(3, 96, (2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if family == "t5":
        out["decoder_input_ids"] = RNG.integers(3, 96, (2, 5))
    return out


def torch_logits(model, batch: dict) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) for k, v in batch.items()}).logits.float().numpy()


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def peft_load(base_dir, adapter_dir):
    """PyTorch PEFT loading an adapter folder; returns (model, warnings raised by PEFT)."""
    torch_model = getattr(transformers, FAMILY_AUTO[base_dir.name]).from_pretrained(base_dir).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = peft.PeftModel.from_pretrained(torch_model, adapter_dir).eval()
    return model, [str(w.message) for w in caught if "peft" in w.filename]


FAMILY_AUTO = {name: auto for name, (_, auto, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Per family: the base checkpoint, a PEFT adapter (random: init_lora_weights=False) and PEFT's logits before
    and after merge_and_unload, built once."""
    out = {}
    for family, (build, auto, kwargs) in FAMILIES.items():
        root = tmp_path_factory.mktemp(family)
        torch.manual_seed(0)
        torch_model = build().eval()
        base_dir = root / family
        torch_model.save_pretrained(base_dir)
        config = peft.LoraConfig(init_lora_weights=False, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = peft.get_peft_model(torch_model, config).eval()
        if family == "bert":  # a trained classifier copy, distinct from the base's
            with torch.no_grad():
                for p in peft_model.base_model.model.classifier.modules_to_save["default"].parameters():
                    p.add_(torch.randn_like(p))
        peft_model.save_pretrained(root / "adapter")
        batch = inputs(family)
        trainable, total = peft_model.get_nb_trainable_parameters()
        logits = torch_logits(peft_model, batch)
        merged = torch_logits(peft_model.merge_and_unload(), batch)
        out[family] = dict(base_dir=base_dir, adapter_dir=root / "adapter", batch=batch, logits=logits,
                           merged=merged, counts=(trainable, total), kwargs=kwargs, auto=auto, root=root)
    return out


def fx_base(ref):
    return getattr(fxformers, ref["auto"]).from_pretrained(ref["base_dir"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_peft_adapter_loads_in_fxformers(references, family):
    ref = references[family]
    base = fx_base(ref)
    model = PeftModel.from_pretrained(base, ref["adapter_dir"])
    assert rel(model(**ref["batch"]).logits, ref["logits"]) < 1e-5
    merged = model.merge_and_unload()
    assert type(merged) is type(base)
    assert rel(merged(**ref["batch"]).logits, ref["merged"]) < 1e-5
    # the adapter was folded in: every targeted kernel moved
    flat_base, flat_merged = fxformers.convert.flatten(base.params), fxformers.convert.flatten(merged.params)
    assert set(flat_base) == set(flat_merged)
    moved = {p for p in flat_base if not np.array_equal(flat_base[p], flat_merged[p])}
    assert moved == {t.scope + "/kernel" for t in model._targets["default"].layers} | set(model._targets["default"].saved)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fxformers_adapter_loads_in_peft(references, family, tmp_path):
    ref = references[family]
    kwargs = {k: v for k, v in ref["kwargs"].items() if k != "fan_in_fan_out"}
    model = get_peft_model(fx_base(ref), LoraConfig(init_lora_weights=False, **kwargs), seed=1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model.print_trainable_parameters()
    trainable, total = ref["counts"]
    assert printed.getvalue().strip() == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")
    model.save_pretrained(tmp_path)
    torch_model, peft_warnings = peft_load(ref["base_dir"], tmp_path)
    assert peft_warnings == []
    assert rel(torch_logits(torch_model, ref["batch"]), model(**ref["batch"]).logits) < 1e-5
    # merged and saved as a plain model: transformers loads it with the same outputs
    model.merge_and_unload().save_pretrained(tmp_path / "merged")
    plain = getattr(transformers, ref["auto"]).from_pretrained(tmp_path / "merged").eval()
    assert rel(torch_logits(plain, ref["batch"]), model(**ref["batch"]).logits) < 1e-5


def test_default_init_starts_at_the_base_and_counts(references):
    ref = references["llama"]
    base = fx_base(ref)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16))  # PEFT defaults: q_proj, v_proj; B = 0
    assert rel(model(**ref["batch"]).logits, base(**ref["batch"]).logits) == 0.0
    a = np.asarray(model.params["model"]["layers_0"]["self_attn"]["q_proj"]["lora_A"])
    assert a.shape == (32, 8) and 0 < np.abs(a).max() <= 32**-0.5
    trainable, total = model.get_nb_trainable_parameters()
    assert trainable == 2 * 2 * 8 * (32 + 32 + 32 + 16) // 2 and total == base.num_parameters() + trainable
    with pytest.raises(ValueError, match="matches no Linear layer"):
        get_peft_model(base, LoraConfig(target_modules=["query"]))


def test_named_adapters_set_and_disable(references, tmp_path):
    ref = references["llama"]
    base = fx_base(ref)
    model = PeftModel.from_pretrained(base, ref["adapter_dir"])
    model.add_adapter("other", LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj"], init_lora_weights=False))
    assert model.active_adapter == "other"
    other = np.asarray(model(**ref["batch"]).logits)
    model.set_adapter("default")
    assert rel(model(**ref["batch"]).logits, ref["logits"]) < 1e-5
    with model.disable_adapter():
        assert rel(model(**ref["batch"]).logits, base(**ref["batch"]).logits) == 0.0
    assert rel(model(**ref["batch"]).logits, ref["logits"]) < 1e-5
    model.save_pretrained(tmp_path)  # "default" in the folder, "other" in a sub-folder, as PEFT does
    again = PeftModel.from_pretrained(base, tmp_path)
    again.load_adapter(tmp_path / "other", adapter_name="other")
    assert rel(again(**ref["batch"]).logits, other) < 1e-6


def test_generate_and_pipeline_on_adapted_model(references):
    ref = references["gpt2"]
    model = PeftModel.from_pretrained(fx_base(ref), ref["adapter_dir"])
    prompt = ref["batch"]["input_ids"][:1]
    tokens = model.generate(prompt, max_new_tokens=6, do_sample=False)
    merged = model.merge_and_unload().generate(prompt, max_new_tokens=6, do_sample=False)
    torch_model, _ = peft_load(ref["base_dir"], ref["adapter_dir"])
    with torch.no_grad():
        expected = torch_model.generate(input_ids=torch.as_tensor(prompt), max_new_tokens=6, do_sample=False,
                                        pad_token_id=2)
    np.testing.assert_array_equal(np.asarray(tokens), expected.numpy())
    np.testing.assert_array_equal(np.asarray(merged), expected.numpy())


def _lm_batch(n: int, t: int = 12) -> dict:
    """A learnable toy task: each row counts up by a row-specific stride."""
    rows = np.stack([(np.arange(t) * (i % 4 + 1) + 3) % 96 for i in range(n)])
    return {"input_ids": rows, "attention_mask": np.ones_like(rows), "labels": rows}


@pytest.fixture(scope="module")
def trainable_base():
    """A tiny Llama whose (frozen) output layer is large enough to express confident predictions."""
    config = fxformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   initializer_range=0.3, rope_theta=10000.0)
    return fxformers.LlamaForCausalLM.from_config(config)


def _adapter_bytes(model) -> int:
    return sum(np.asarray(v).nbytes for v in jax.tree_util.tree_leaves(model.adapter_params()))


def _assert_only_adapter_changed(model, params) -> None:
    before, after = fxformers.convert.flatten(model.params), fxformers.convert.flatten(params)
    frozen = model.frozen_parameters
    for path, value in before.items():
        same = np.array_equal(np.asarray(value), np.asarray(after[path]))
        assert same == frozen(path, value), path  # frozen: bit-identical; adapter: trained
        assert np.asarray(after[path]).dtype == np.asarray(value).dtype or not frozen(path, value), path


def test_lora_train_step_trains_only_the_adapter(trainable_base, tmp_path):
    model = get_peft_model(trainable_base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                      lora_dropout=0.05))
    tx = create_optimizer(1e-2, lr_scheduler_type="constant", frozen=model.frozen_parameters).tx
    state = TrainState.create(model.params, tx)
    # AdamW's two moments of the adapter, plus step counters: the frozen base takes no optimizer memory
    adapter = _adapter_bytes(model)
    assert 2 * adapter <= optimizer_state_bytes(state.opt_state) <= 2 * adapter + 64
    step = make_train_step(model, tx, frozen=model.frozen_parameters, donate=False)
    batch, losses = _lm_batch(8), []
    for _ in range(10):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    _assert_only_adapter_changed(model, state.params)
    # the trained adapter loads in PyTorch PEFT with the same logits
    model.params = state.params
    trainable_base.save_pretrained(tmp_path / "base")
    model.save_pretrained(tmp_path / "adapter")
    torch_base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch_model = peft.PeftModel.from_pretrained(torch_base, tmp_path / "adapter").eval()
    assert [str(w.message) for w in caught if "peft" in w.filename] == []
    assert rel(torch_logits(torch_model, {"input_ids": batch["input_ids"]}), model(batch["input_ids"]).logits) < 1e-5


def test_qlora_trainer_bf16_accumulation_and_save(trainable_base, tmp_path):
    model = get_peft_model(trainable_base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"),
                           base_precision="nf4")
    initial = model.params
    args = fxformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=10, learning_rate=1e-2, lr_scheduler_type="constant",
        per_device_train_batch_size=4, gradient_accumulation_steps=2, bf16=True, logging_steps=1,
        save_strategy="no", disable_tqdm=True)
    data = [{k: v[i] for k, v in _lm_batch(8).items()} for i in range(8)]
    trainer = fxformers.Trainer(model, args, train_dataset=data)
    trainer.train()
    losses = [h["loss"] for h in trainer.log_history if "loss" in h and "train_loss" not in h]
    assert losses[-1] < 0.7 * losses[0], losses
    adapter = _adapter_bytes(model)
    # MultiSteps keeps an accumulator too: three adapter-sized trees, nothing base-sized
    assert optimizer_state_bytes(trainer.train_state.opt_state) <= 3 * adapter + 128
    packed = fxformers.convert.flatten(trainer.train_state.params)
    assert any(p.endswith("kernel_nf4") and v.dtype == jnp.uint8 for p, v in packed.items())
    model.params, trained = initial, model.params
    _assert_only_adapter_changed(model, trained)
    model.params = trained
    trainer.save_model(str(tmp_path / "adapter"))
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                          "adapter_model.safetensors"]


def test_quantized_base_memory(references):
    base = fx_base(references["llama"])
    config = LoraConfig(r=8, target_modules="all-linear")
    sizes = {p: base_memory_bytes(get_peft_model(base, config, base_precision=p)) for p in (None, "bfloat16", "int8", "nf4")}
    assert sizes[None] > sizes["bfloat16"] > sizes["int8"] > sizes["nf4"]
    # the quantised forward stays close to the float one
    batch = references["llama"]["batch"]
    full = np.asarray(get_peft_model(base, config)(**batch).logits)
    for precision, tolerance in (("int8", 0.05), ("nf4", 0.3)):
        quantized = np.asarray(get_peft_model(base, config, base_precision=precision)(**batch).logits)
        assert rel(quantized, full) < tolerance, precision


def test_train_recipe_with_lora_section(tmp_path):
    import json
    import shutil

    from fxformers.testing_assets import minilm_path
    from fxformers.training.recipes import train_from_config

    model_dir = tmp_path / "tiny"
    config = fxformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=64)
    fxformers.BertForSequenceClassification(config).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, model_dir / name)
    rows = ["text,label"] + [f"the film was {w},{lab}" for w, lab in [("great", "pos"), ("awful", "neg")] * 4]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "run.yaml").write_text(
        f"task: text-classification\nmodel_name_or_path: {model_dir}\ntrain_file: {tmp_path / 'train.csv'}\n"
        f"max_seq_length: 16\nlora:\n  r: 4\n  lora_alpha: 8\n  target_modules: [query, value]\n"
        f"training:\n  output_dir: {tmp_path / 'out'}\n  per_device_train_batch_size: 4\n  max_steps: 2\n"
        "  save_strategy: 'no'\n  disable_tqdm: true\n")
    metrics = train_from_config(tmp_path / "run.yaml", ["--lora.r", "2"])
    assert np.isfinite(metrics["train_loss"])
    saved = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert saved["r"] == 2 and saved["task_type"] == "SEQ_CLS" and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    base = fxformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    loaded = PeftModel.from_pretrained(base, tmp_path / "out")  # the classifier copy came along (modules_to_save)
    assert "classifier/kernel" in fxformers.convert.flatten(loaded.adapter_params())
    # pipelines run adapted models (unpadded encoder execution included) as the merged model
    texts = ["the film was great", "awful"]
    adapted = fxformers.pipeline("text-classification", model=loaded, tokenizer=str(model_dir), top_k=None)(texts)
    merged = fxformers.pipeline("text-classification", model=loaded.merge_and_unload(), tokenizer=str(model_dir),
                                top_k=None)(texts)
    for a, m in zip(adapted, merged):
        assert [x["label"] for x in a] == [x["label"] for x in m]
        np.testing.assert_allclose([x["score"] for x in a], [x["score"] for x in m], rtol=1e-5)


def test_adapter_bin_and_unsupported_features(references, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file

    ref = references["bert"]
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(ref["adapter_dir"] / "adapter_config.json", folder)
    torch.save(load_file(ref["adapter_dir"] / "adapter_model.safetensors"), folder / "adapter_model.bin")
    base = fx_base(ref)
    from_bin = fxformers.convert.flatten(PeftModel.from_pretrained(base, folder).adapter_params())
    from_st = fxformers.convert.flatten(PeftModel.from_pretrained(base, ref["adapter_dir"]).adapter_params())
    assert from_bin.keys() == from_st.keys() and all(np.array_equal(from_bin[k], from_st[k]) for k in from_st)

    config = json.loads((ref["adapter_dir"] / "adapter_config.json").read_text())
    with pytest.raises(NotImplementedError, match="use_dora"):
        LoraConfig.from_dict({**config, "use_dora": True})
    with pytest.raises(NotImplementedError, match="bias"):
        LoraConfig(bias="all")
    (folder / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["query"]}))
    with pytest.raises(ValueError, match="unexpected keys"):  # the file's value layers are not targeted
        PeftModel.from_pretrained(base, folder)


@pytest.mark.mesh
def test_lora_trainer_on_a_mesh(trainable_base, tmp_path):
    """Adapters (replicated) over an int8 base split by fsdp on 8 devices: the loss goes down, the base stays int8."""
    model = get_peft_model(trainable_base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"),
                           base_precision="int8")
    args = fxformers.TrainingArguments(output_dir=str(tmp_path), max_steps=6, learning_rate=1e-2,
                                       lr_scheduler_type="constant", per_device_train_batch_size=1, logging_steps=1,
                                       save_strategy="no", disable_tqdm=True, fsdp=True)
    data = [{k: v[i] for k, v in _lm_batch(16).items()} for i in range(16)]
    trainer = fxformers.Trainer(model, args, train_dataset=data)
    trainer.train()
    assert jax.device_count() == 8
    losses = [h["loss"] for h in trainer.log_history if "loss" in h and "train_loss" not in h]
    assert losses[-1] < 0.7 * losses[0], losses
    flat = fxformers.convert.flatten(trainer.train_state.params)
    assert any(p.endswith("kernel_q") and v.dtype == jnp.int8 for p, v in flat.items())
    assert all(v.sharding.is_fully_replicated for p, v in flat.items() if p.endswith(("lora_A", "lora_B")))
