"""Hostile checkpoint, config and tokenizer files, built the way an attacker would (pickle opcodes by hand, raw
safetensors headers), loaded in a child process under a memory limit and a timeout: each must end, fast, in a
clear error that names the file, with nothing executed."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import msgpack
import numpy as np
import pytest

from hostile_helpers import assert_clean_error, run_isolated, run_isolated_each

# ------------------------------------------------------------------------------------------ pickle assembly


def uni(text: str) -> bytes:
    """BINUNICODE."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    return b"K" + bytes([value]) if value < 256 else b"J" + struct.pack("<i", value)


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def expanded_tensor(size: tuple[int, ...]) -> bytes:
    """_rebuild_tensor_v2(storage '0' of ONE float, offset 0, size, stride all zero, False, OrderedDict())."""
    storage = b"(" + uni("storage") + global_("torch", "FloatStorage") + uni("0") + uni("cpu") + integer(1) + b"tQ"
    dims = b"(" + b"".join(integer(d) for d in size) + b"t"
    strides = b"(" + b"".join(integer(0) for _ in size) + b"t"
    return (
        global_("torch._utils", "_rebuild_tensor_v2")
        + b"(" + storage + integer(0) + dims + strides + b"\x89" + global_("collections", "OrderedDict") + b")R" + b"t"
        + b"R"
    )


def state_dict_pickle(entries: dict[str, bytes]) -> bytes:
    body = b"".join(uni(key) + value for key, value in entries.items())
    return b"\x80\x02}q\x00(" + body + b"u."


def system_call(marker: Path) -> bytes:
    return global_("os", "system") + b"(" + uni(f"touch {marker}") + b"tR"


def write_torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def memo_dag(depth: int) -> bytes:
    """A tuple t_depth = (t_{depth-1}, t_{depth-1}), t_0 = (None,): 2**depth nodes from ~8*depth bytes."""
    out = b"N\x85q\x00"
    for i in range(1, depth + 1):
        out += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i])
    return out


LOAD_BIN = "fxformers.checkpoints:load_torch_bin"
LOAD_FILE = "fxformers.checkpoints:load_file"


# ------------------------------------------------------------------------------------------ 1. expansions


def test_stride_zero_expansions_are_refused_by_their_total(tmp_path):
    """Six 64 MiB views of a one-float storage (1.5 GB from a ~1 KB file; each under any per-tensor cap)."""
    entries = {f"w{i}": expanded_tensor((4096, 4096)) for i in range(6)}
    path = write_torch_zip(tmp_path / "pytorch_model.bin", state_dict_pickle(entries), {"0": b"\0\0\0\0"})
    assert path.stat().st_size < 4096
    result = run_isolated(LOAD_BIN, path, extra_mb=512)
    assert_clean_error(result, "CheckpointError", str(path), "expanded (stride-0) views", rss_mb=100)


def test_one_small_expansion_still_loads(tmp_path):
    """A legitimate broadcast buffer (BERT's position_ids style, here 1x512 of a 512-element storage is plain;
    a small stride-0 view is allowed within the slack)."""
    path = write_torch_zip(
        tmp_path / "pytorch_model.bin", state_dict_pickle({"b": expanded_tensor((4, 8))}), {"0": b"\0\0\x80?"}
    )
    from fxformers.checkpoints import load_torch_bin

    state = load_torch_bin(path)
    np.testing.assert_array_equal(state["b"], np.ones((4, 8), np.float32))


# ------------------------------------------------------------------------------------------ 2. memo DAGs


@pytest.mark.parametrize("use", ["dict_key", "persistent_id", "nested"])
def test_memo_dag_is_refused_before_it_runs(tmp_path, use):
    marker = tmp_path / "pwned"
    if use == "dict_key":  # hashing the key walks 2**60 nodes
        body = b"\x80\x02}q\xf0" + memo_dag(60) + uni("v") + b"s"
    elif use == "persistent_id":  # the refusal message would repr it
        body = b"\x80\x02}q\xf0" + uni("w") + memo_dag(60) + b"Qs"
    else:  # 300 levels of nesting
        body = b"\x80\x02}q\xf0" + uni("w") + b"N" + b"\x85" * 300 + b"s"
    data = body + system_call(marker) + b"0."
    assert len(data) < 1024
    path = write_torch_zip(tmp_path / "pytorch_model.bin", data, {})
    result = run_isolated(LOAD_BIN, path, extra_mb=256)
    assert_clean_error(result, "CheckpointError", str(path), rss_mb=50)
    assert "nest" in result["message"] or "nodes" in result["message"]
    assert not marker.exists()


def test_memo_dag_in_legacy_format(tmp_path):
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    data = magic + b"\x80\x02M\xe9\x03." + b"\x80\x02}." + b"\x80\x02}q\xf0" + memo_dag(60) + uni("v") + b"s."
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(data)
    result = run_isolated(LOAD_BIN, path, extra_mb=256)
    assert_clean_error(result, "CheckpointError", str(path), "nodes", rss_mb=50)


def test_computed_stack_global_is_named_honestly(tmp_path):
    """STACK_GLOBAL whose strings come from a REDUCE: refused, and not reported as 'None.None'."""
    data = b"\x80\x04" + global_("torch", "device") + b"(" + uni("cpu") + b"tR" + uni("x") + b"\x93."
    path = write_torch_zip(tmp_path / "pytorch_model.bin", data, {})
    result = run_isolated(LOAD_BIN, path)
    assert_clean_error(result, "UnsafeCheckpointError", str(path), "computed")
    assert "None.None" not in result["message"]


def test_compressed_storage_message(tmp_path):
    from fxformers.checkpoints import CheckpointError, load_torch_bin

    storage = b"(" + uni("storage") + global_("torch", "FloatStorage") + uni("0") + uni("cpu") + integer(4096) + b"tQ"
    tensor = global_("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + integer(0) + b"(" + integer(4096) + b"t("
    tensor += integer(1) + b"t\x89" + global_("collections", "OrderedDict") + b")Rt" + b"R"
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict_pickle({"w": tensor}))
        archive.writestr("archive/data/0", b"\0" * 16384, compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="compressed"):
        load_torch_bin(path)


# ------------------------------------------------------------------------------------------ 3. safetensors


def raw_safetensors(path: Path, header: bytes | str | dict, data: bytes = b"") -> Path:
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def entry(begin: int, end: int, shape=None, dtype="F32") -> dict:
    return {"dtype": dtype, "shape": shape if shape is not None else [(end - begin) // 4], "data_offsets": [begin, end]}


SAFETENSORS_CASES = {
    "deep_json": ("[" * 100_000 + "]" * 100_000, b"", "not valid JSON"),
    "dtype_is_a_list": ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "dtype"),
    "shape_is_a_dict": ({"w": {"dtype": "F32", "shape": {"a": 1}, "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
    "huge_int": ('{"w": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}', b"\0" * 4,
                 "not valid JSON"),
    "metadata_not_strings": ({"__metadata__": {"a": [1]}, "w": entry(0, 4)}, b"\0" * 4, "__metadata__"),
    "overlap": ({"a": entry(0, 8), "b": entry(4, 12)}, b"\0" * 12, "overlaps"),
    "same_range": ({"a": entry(0, 8), "b": entry(0, 8)}, b"\0" * 8, "overlaps"),
    "gap": ({"a": entry(0, 4), "b": entry(8, 12)}, b"\0" * 12, "gap"),
    "trailing": ({"a": entry(0, 4)}, b"\0" * 8, "after the last"),
    "duplicate_key": ('{"a": ' + json.dumps(entry(0, 4)) + ', "a": ' + json.dumps(entry(4, 8)) + "}", b"\0" * 8,
                      "twice"),
    "not_utf8": (b"\xff\xfe{}", b"", "not valid JSON"),
}


def test_crafted_safetensors(tmp_path):
    paths = {case: raw_safetensors(tmp_path / f"{case}.safetensors", header, data)
             for case, (header, data, _) in SAFETENSORS_CASES.items()}
    results = run_isolated_each("fxformers.checkpoints:load_safetensors", [(p,) for p in paths.values()],
                                extra_mb=512)
    for (case, path), result in zip(paths.items(), results):
        assert_clean_error(result, "CheckpointError", str(path), SAFETENSORS_CASES[case][2])


def test_safetensors_library_agrees_on_overlaps(tmp_path):
    """The overlap/gap/duplicate refusals match the safetensors library's own validation."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    for case in ("overlap", "gap", "trailing", "duplicate_key"):
        header, data, _ = SAFETENSORS_CASES[case]
        path = raw_safetensors(tmp_path / f"{case}.safetensors", header, data)
        with pytest.raises(SafetensorError):
            load_file(str(path))


# ------------------------------------------------------------------------------------------ 4. indexes


def test_index_naming_itself(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "model.safetensors.index.json"}}))
    result = run_isolated(LOAD_FILE, index)
    assert_clean_error(result, "CheckpointError", str(index), "not a weight file")


def test_index_naming_another_index(tmp_path):
    (tmp_path / "b.index.json").write_text(json.dumps({"weight_map": {"w": "a.index.json"}}))
    index = tmp_path / "a.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "b.index.json"}}))
    result = run_isolated("fxformers.checkpoints:load_state_dict", index)
    assert_clean_error(result, "CheckpointError", str(index), "not a weight file")


def test_deeply_nested_index(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text('{"weight_map": ' + "[" * 200_000 + "]" * 200_000 + "}")
    result = run_isolated("fxformers.checkpoints:load_state_dict", tmp_path)
    assert_clean_error(result, "CheckpointError", str(index))


# ------------------------------------------------------------------------------------------ 5. msgpack


MSGPACK_LEAVES = [("a string", "a str"), (b"raw bytes", "a bytes"), (msgpack.ExtType(42, b"\0" * 8), "extension type 42"),
                  (None, "a NoneType"), ([1.0, 2.0], "a list")]


def test_msgpack_non_array_leaves_and_deep_nesting(tmp_path):
    calls, needles = [], []
    for i, (leaf, needle) in enumerate(MSGPACK_LEAVES):
        path = tmp_path / f"{i}" / "flax_model.msgpack"
        path.parent.mkdir()
        path.write_bytes(msgpack.packb({"params": {"dense": {"kernel": leaf}}}, use_bin_type=True))
        calls.append((path,))
        needles.append(needle)
    deep = tmp_path / "deep.msgpack"
    deep.write_bytes(b"\x81\xa1a" * 5000 + b"\xc0")
    calls.append((deep,))
    needles.append("not a valid Flax msgpack")
    for (path,), needle, result in zip(calls, needles, run_isolated_each(LOAD_FILE, calls)):
        assert_clean_error(result, "CheckpointError", str(path), needle, seconds=15)


# ------------------------------------------------------------------------------------------ 6. config.json


CONFIG_CASES = [
    ({"num_hidden_layers": 1_000_000_000}, "num_hidden_layers=1000000000"),
    ({"num_hidden_layers": -1}, "num_hidden_layers=-1"),
    ({"hidden_size": "768"}, "hidden_size='768'"),
    ({"hidden_size": 64.5}, "hidden_size=64.5"),
    ({"vocab_size": True}, "vocab_size=True"),
    ({"layer_norm_eps": "small"}, "layer_norm_eps"),
    ({"num_labels": 10**9}, "num_labels"),
    ({"id2label": {"x": "A"}}, "id2label"),
    ({"pad_token_id": [[0]]}, "pad_token_id"),
]
CONFIG_TEXTS = ["[1, 2]", "[" * 100_000, '"a string"', '{"hidden_size": 1e999}']


def test_config_wrong_types_and_absurd_sizes(tmp_path):
    calls, needles = [], []
    for i, (fields, needle) in enumerate(CONFIG_CASES):
        config = {"model_type": "bert", "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 37, **fields}
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "config.json").write_text(json.dumps(config))
        calls.append((tmp_path / f"c{i}",))
        needles.append(needle)
    for i, text in enumerate(CONFIG_TEXTS):
        (tmp_path / f"t{i}").mkdir()
        (tmp_path / f"t{i}" / "config.json").write_text(text)
        calls.append((tmp_path / f"t{i}",))
        needles.append("config.json")
    results = run_isolated_each("fxformers.models.bert.configuration:BertConfig.from_pretrained", calls)
    for (folder,), needle, result in zip(calls, needles, results):
        assert_clean_error(result, "ValueError", str(folder / "config.json"), needle)


def test_billion_layers_is_refused_before_building(tmp_path):
    """Through the model loader: refused before anything is traced or allocated (it used to hang)."""
    config = {"model_type": "bert", "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 10**9,
              "num_attention_heads": 2, "intermediate_size": 37}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_isolated("fxformers:BertModel.from_pretrained", tmp_path, timeout=60)
    assert_clean_error(result, "ValueError", str(tmp_path / "config.json"), "num_hidden_layers", seconds=10,
                       rss_mb=1000)


def test_config_override_is_checked_too():
    from fxformers import BertConfig

    with pytest.raises(ValueError, match="num_hidden_layers=-1"):
        BertConfig(num_hidden_layers=-1)
    config = BertConfig()
    with pytest.raises(ValueError, match="n_layer|num_hidden_layers"):
        config.update({"num_hidden_layers": 10**9})


# ------------------------------------------------------------------------------------------ 7. tokenizer files


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def spm_model(charsmap: bytes, pieces=("<unk>", "a", "b")) -> bytes:
    """A SentencePiece ModelProto by hand: pieces (unk first) and a normaliser with ``charsmap``."""
    out = b""
    for i, piece in enumerate(pieces):
        out += _field(1, _field(1, piece.encode()) + b"\x15" + struct.pack("<f", -float(i)) + (b"\x18\x02" if i == 0 else b""))
    return out + _field(3, _field(2, charsmap))


@pytest.fixture(scope="module")
def real_spm(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    root = tmp_path_factory.mktemp("spm")
    (root / "corpus.txt").write_text("\n".join(["Hello world ﬁ café ① Ｔｅｓｔ wörld"] * 40))
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "m"), vocab_size=40,
                                   minloglevel=2, hard_vocab_limit=False, num_threads=1)
    return (root / "m.model").read_bytes()


def _tokenizer_folder(root: Path, name: str, files: dict[str, bytes | str]) -> Path:
    folder = root / name
    folder.mkdir()
    for filename, data in files.items():
        (folder / filename).write_bytes(data if isinstance(data, bytes) else data.encode())
    return folder


T5_CONFIG = json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0})


def test_hostile_sentencepiece_and_tokenizer_files(tmp_path, real_spm):
    from fxformers.tokenization.spm import parse_spm_model

    charsmap = parse_spm_model(real_spm).precompiled_charsmap
    broken_trie = bytearray(charsmap)
    broken_trie[4:4 + 4 * 300] = b"\xff\xff\xff\x7f" * 300  # the root's units point far outside the array
    huge_trie = struct.pack("<I", 0xC0000000) + b"\0" * 8  # 'allocate 3 GiB' in 12 bytes
    cases = {  # name: (files, needle)
        "huge_trie": ({"spiece.model": spm_model(huge_trie), "tokenizer_config.json": T5_CONFIG}, "spiece.model"),
        "broken_trie": ({"spiece.model": spm_model(bytes(broken_trie)), "tokenizer_config.json": T5_CONFIG},
                        "spiece.model"),
        "bad_unk_id": ({"spiece.model": spm_model(b"") + _field(2, b"\xc0\x02\x63"),  # trainer_spec.unk_id = 99
                        "tokenizer_config.json": T5_CONFIG}, "spiece.model"),
        "truncated_spm": ({"spiece.model": real_spm[:len(real_spm) // 2], "tokenizer_config.json": T5_CONFIG},
                          "spiece.model"),
        "tokenizer_json_truncated": ({"tokenizer.json": '{"model": {"type": "BPE", "vocab": {'}, "tokenizer.json"),
        "tokenizer_json_deep": ({"tokenizer.json": "[" * 100_000 + "]" * 100_000}, "tokenizer.json"),
        "tokenizer_json_wrong_types": ({"tokenizer.json": json.dumps({"model": {"type": "BPE", "vocab": [1, 2]}})},
                                       "tokenizer.json"),
        "tokenizer_json_charsmap": ({"tokenizer.json": json.dumps({
            "version": "1.0", "normalizer": {"type": "Precompiled", "precompiled_charsmap":
                                             __import__("base64").b64encode(huge_trie).decode()},
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})}, "tokenizer.json"),
        "config_not_utf8": ({"tokenizer_config.json": b"\xff\xfe{", "vocab.txt": "[UNK]\na\n"},
                            "tokenizer_config.json"),
        "config_a_list": ({"tokenizer_config.json": "[1]", "vocab.txt": "[UNK]\na\n"}, "tokenizer_config.json"),
    }
    folders = {name: _tokenizer_folder(tmp_path, name, files) for name, (files, _) in cases.items()}
    results = run_isolated_each("hostile_targets:load_tokenizer_and_encode", [(f,) for f in folders.values()],
                                extra_mb=768, timeout=60)
    for (name, folder), result in zip(folders.items(), results):
        assert_clean_error(result, "TokenizerError", cases[name][1], rss_mb=150)
        assert "PanicException" not in result["types"], name
    # the real model, and the real charsmap through the check, still load
    good = _tokenizer_folder(tmp_path, "good", {"spiece.model": real_spm, "tokenizer_config.json": T5_CONFIG})
    from hostile_targets import load_tokenizer_and_encode

    assert load_tokenizer_and_encode(str(good))


# ------------------------------------------------------------------------------------------ 8. chat templates

TEMPLATES = {  # name: (template, needle)
    # the time or the loop-count guard stops it, whichever a machine reaches first
    "nested_range_loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                           "was stopped: it "),
    "loop_output": ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxx{% endfor %}{% endfor %}",
                    "writes more than"),
    "string_times_1e10": ("{{ 'a' * 10**10 }}", "repeats a value"),
    "list_times": ("{% set x = [1] * 1000 %}{{ (x * 100000)|length }}", "repeats a value"),
    "power": ("{{ 7 ** 100000000 }}", "power"),
    "macro_recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    "include": ("{% include 'secrets.txt' %}", "include"),
    "import": ("{% import 'x.j2' as x %}{{ x }}", "import"),
    "from_import": ("{% from 'x.j2' import y %}", "fromimport"),
    "extends": ("{% extends 'base.j2' %}", "extends"),
    "huge_range": ("{{ range(10**12)|list|length }}", "the chat template"),
}


def test_hostile_chat_templates_end_fast_with_a_clear_error():
    names = list(TEMPLATES)
    results = run_isolated_each("hostile_targets:render_chat_template", [(TEMPLATES[n][0],) for n in names],
                                extra_mb=1024, timeout=90)
    for name, result in zip(names, results):
        assert_clean_error(result, "ChatTemplateError", "the chat template of 'hostile/'", TEMPLATES[name][1],
                           seconds=4, rss_mb=600)


@pytest.mark.parametrize(
    "template",
    [
        "{{ raise_exception.__globals__ }}",
        "{{ raise_exception|attr('__globals__') }}",
        "{{ (raise_exception|attr('_fn')).__globals__ }}",
        "{{ ('{0.__globals__}'|attr('format'))(raise_exception) }}",
        "{{ ('{0._fn.__globals__[os].environ}'|attr('format'))(raise_exception) }}",
        "{{ strftime_now.__call__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
    ],
)
def test_chat_template_cannot_read_the_environment(template, monkeypatch):
    from jinja2.exceptions import SecurityError

    from fxformers.tokenization.chat import ChatTemplateError, render

    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    try:
        out = render(template, [[{"role": "user", "content": "hi"}]])[0]
    except (SecurityError, ChatTemplateError):
        return
    assert "hf_secret_value" not in out and "environ" not in out and "function" not in out, out


def test_old_jinja2_is_refused(monkeypatch):
    import jinja2

    from fxformers.tokenization import chat

    monkeypatch.setattr(jinja2, "__version__", "3.1.5")
    chat.compile_template.cache_clear()
    with pytest.raises(ImportError, match="3.1.6.*CVE-2025-27516"):
        chat.render("{{ messages }}", [[{"role": "user", "content": "hi"}]])
    monkeypatch.undo()
    chat.compile_template.cache_clear()


def test_ordinary_templates_still_render():
    from fxformers.tokenization.chat import render

    template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if not loop.last %}\n{% endif %}{% endfor %}"
                "{% for i in range(2) %}{{ i }}{% endfor %}{{ range(3)|length }}{{ range(3)|list }}"
                "{% for i in range(3)|reverse %}{{ i }}{% endfor %}{{ 'ab' * 2 }}{{ 2 ** 3 }}")
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    assert render(template, [chat])[0] == plain.render(messages=chat) == "<user>hi<assistant>yo013[0, 1, 2]210abab8"


# ------------------------------------------------------------------------------------------ accepted but wrong


@pytest.fixture(scope="module")
def tiny_gpt2():
    from fxformers.models.gpt2.configuration import GPT2Config
    from fxformers.models.gpt2.modeling import GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32), seed=0)


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"do_sample": True, "temperature": float("nan")}, "temperature must be a finite number"),
        ({"do_sample": True, "top_p": float("inf")}, "top_p must be a finite number"),
        ({"max_new_tokens": 1.5}, "max_new_tokens must be an integer"),
        ({"num_beams": 2.0}, "num_beams must be an integer"),
        ({"bad_words_ids": [[3], [10**6]]}, "vocabulary size is 50"),
        ({"suppress_tokens": [50]}, "suppress_tokens holds ids outside"),
    ],
)
def test_generate_refuses_bad_settings(tiny_gpt2, settings, needle):
    with pytest.raises(ValueError, match=needle):
        tiny_gpt2.generate(np.array([[1, 2, 3]]), **{"max_new_tokens": 2, **settings})


def test_decode_refuses_float_ids(tmp_path):
    from fxformers.tokenization import TokenizerInputError
    from hostile_targets import AutoTokenizer

    folder = _tokenizer_folder(tmp_path, "wl", {"vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n",
                                                "tokenizer_config.json": '{"tokenizer_class": "BertTokenizer"}'})
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.decode([4, np.int64(5)]) == "hello world"
    for bad in ([1.5], [4, True], [np.float32(4.0)]):
        with pytest.raises(TokenizerInputError, match="integers"):
            tok.decode(bad)
