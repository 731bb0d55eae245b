"""Hostile and broken checkpoint files: refused or reported cleanly, never executed, never a hang."""

from __future__ import annotations

import builtins
import importlib
import io
import json
import os
import pickle
import signal
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fxformers.checkpoints import (  # noqa: E402
    CheckpointError,
    CheckpointNotFoundError,
    UnsafeCheckpointError,
    load_file,
    load_state_dict,
    load_torch_bin,
    save_state_dict,
)


class SystemCall:
    """Unpickling this runs a shell command: the classic malicious checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalCall:
    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return (builtins.eval, (self.source,))


class ImportCall:
    def __reduce__(self):
        return (importlib.import_module, ("this",))  # importing `this` prints the Zen: a visible side effect


def small_state():
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    return {"w": w, "tied": w, "view": w[1:, 1:], "b16": torch.randn(5).bfloat16(), "i": torch.arange(3)}


@pytest.fixture()
def marker(tmp_path):
    return tmp_path / "pwned"


def _check_refused(path: Path, global_name: str) -> UnsafeCheckpointError:
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_bin(path)
    assert global_name in str(err.value) and str(path) in str(err.value)
    assert err.value.global_name == global_name and err.value.file == str(path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path.parent)
    return err.value


def test_os_system_pickle_is_refused_and_not_run(tmp_path, marker):
    path = tmp_path / "pytorch_model.bin"
    state = small_state()
    state["evil"] = SystemCall(f"touch {marker}")
    torch.save(state, path)
    _check_refused(path, f"{os.system.__module__}.system")
    assert not marker.exists()


def test_the_malicious_file_is_real(tmp_path, marker):
    """The same file does run the command under a full unpickler: the test above tests something."""
    path = tmp_path / "pytorch_model.bin"
    torch.save({"evil": SystemCall(f"touch {marker}")}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_builtins_eval_is_refused(tmp_path, marker):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"evil": EvalCall(f"open({str(marker)!r}, 'w')"), **small_state()}, path)
    _check_refused(path, "builtins.eval")
    assert not marker.exists()


def test_module_import_is_refused(tmp_path, capsys):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"x": ImportCall()}, path)
    _check_refused(path, "importlib.import_module")
    assert "Zen of Python" not in capsys.readouterr().out


def test_protocol_4_stack_global_is_refused(tmp_path, marker):
    path = tmp_path / "pytorch_model.bin"
    torch.save({**small_state(), "evil": SystemCall(f"touch {marker}")}, path, pickle_protocol=4)
    _check_refused(path, f"{os.system.__module__}.system")
    assert not marker.exists()


def rewrite_pickle(src: Path, dst: Path, data_pkl: bytes) -> None:
    """Copy a torch zip checkpoint, replacing its data.pkl (with a correct CRC)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else zin.read(info)
            zout.writestr(info.filename, data)


def valid_bin(tmp_path: Path) -> Path:
    path = tmp_path / "valid.bin"
    torch.save(small_state(), path)
    return path


@pytest.mark.parametrize(
    "payload, refused",
    [
        # a hand-written GLOBAL for os.system after a valid opcode prefix
        (b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.", "os.system"),
        # dotted attribute through an allowed global: the function's globals dict
        (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x0ctorch._utils\x8c\x1e_rebuild_tensor_v2.__globals__\x93.",
         "torch._utils._rebuild_tensor_v2.__globals__"),
        # module/name strings passed through the memo before STACK_GLOBAL
        (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x04true\x85R.", "os.system"),
        # INST opcode (protocol 0) naming subprocess.Popen
        (b"(S'true'\nisubprocess\nPopen\n.", "subprocess.Popen"),
        # a class that is allowed in its module but not the one named: collections.deque is not OrderedDict
        (b"\x80\x02ccollections\ndeque\n)R.", "collections.deque"),
        # torch names outside the allow-list
        (b"\x80\x02ctorch\nload\n)R.", "torch.load"),
        (b"\x80\x02ctorch.serialization\nload\n)R.", "torch.serialization.load"),
    ],
)
def test_crafted_pickles_are_refused(tmp_path, payload, refused):
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(valid_bin(tmp_path), path, payload)
    _check_refused(path, refused)


@pytest.mark.parametrize(
    "payload",
    [
        # BUILD with a dict state on an allowed function
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__K\x01sb.",
        # BUILD with (None, slotstate): setattr(function, "__defaults__", (1,))
        b"\x80\x02ctorch._utils\n_rebuild_parameter\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.",
        # BUILD on a storage type stand-in, trying to change its dtype
        b"\x80\x02ctorch\nFloatStorage\nN}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00Os\x86b.",
    ],
)
def test_pickle_cannot_modify_the_allowed_globals(tmp_path, payload):
    from fxformers.checkpoints import torch_pickle

    defaults = (torch_pickle._rebuild_tensor_v2.__defaults__, torch_pickle._rebuild_parameter.__defaults__)
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(valid_bin(tmp_path), path, payload)
    with pytest.raises(CheckpointError, match="cannot be given state"):
        load_torch_bin(path)
    assert (torch_pickle._rebuild_tensor_v2.__defaults__, torch_pickle._rebuild_parameter.__defaults__) == defaults
    assert torch_pickle.STORAGE_DTYPES["FloatStorage"] == np.float32


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_pickle_protocol_loads(tmp_path, protocol):
    path = tmp_path / "pytorch_model.bin"
    state = {f"module.{i}.weight": torch.full((2,), float(i)) for i in range(50)}
    torch.save(state, path, pickle_protocol=protocol)
    loaded = load_torch_bin(path)
    assert len(loaded) == 50 and loaded["module.49.weight"].tolist() == [49.0, 49.0]


def test_frame_opcode_between_stack_global_strings():
    """Protocol 4 starts a new FRAME wherever 64 KiB fill up, also between STACK_GLOBAL's two strings."""
    from fxformers.checkpoints.torch_pickle import scan_pickle

    frame = b"\x95" + (0).to_bytes(8, "little")
    ok = b"\x80\x04\x8c\x0ctorch._utils" + frame + b"\x8c\x12_rebuild_tensor_v2" + frame + b"\x93."
    scan_pickle(ok, "x.bin")
    bad = b"\x80\x04\x8c\x02os" + frame + b"\x8c\x06system" + frame + b"\x93."
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        scan_pickle(bad, "x.bin")


def test_copyreg_extension_codes_are_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(valid_bin(tmp_path), path, b"\x80\x02\x82\x01)R.")  # EXT1 1
    with pytest.raises(UnsafeCheckpointError):
        load_torch_bin(path)


def test_valid_pickle_still_loads_after_rewrite(tmp_path):
    src = valid_bin(tmp_path)
    with zipfile.ZipFile(src) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(src, path, data)
    state = load_torch_bin(path)
    assert set(state) == {"w", "tied", "view", "b16", "i"}
    np.testing.assert_array_equal(state["view"], small_state()["w"][1:, 1:].numpy())


def test_huge_memo_index_is_refused_without_allocating(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(valid_bin(tmp_path), path, b"\x80\x02}r\xff\xff\xff\x7f.")  # LONG_BINPUT 2**31-1
    with pytest.raises(CheckpointError, match="memo"):
        load_torch_bin(path)


def test_tensor_reaching_past_its_storage_is_an_error(tmp_path):
    src = valid_bin(tmp_path)
    with zipfile.ZipFile(src) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    # the view of w has offset 4 (BININT1 4 after the storage); make its shape (30, 2)
    tampered = data.replace(b"K\x03K\x02\x86", b"K\x1eK\x02\x86", 1)
    assert tampered != data
    path = tmp_path / "pytorch_model.bin"
    rewrite_pickle(src, path, tampered)
    with pytest.raises(CheckpointError, match="past storage"):
        load_torch_bin(path)


def test_legacy_format_malicious_pickle_is_refused(tmp_path, marker):
    path = tmp_path / "pytorch_model.bin"
    torch.save({**small_state(), "evil": SystemCall(f"touch {marker}")}, path, _use_new_zipfile_serialization=False)
    _check_refused(path, f"{os.system.__module__}.system")
    assert not marker.exists()


def test_legacy_format_loads(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save(small_state(), path, _use_new_zipfile_serialization=False)
    state = load_torch_bin(path)
    np.testing.assert_array_equal(state["view"], small_state()["w"][1:, 1:].numpy())
    assert state["b16"].dtype.name == "bfloat16"


def test_tar_format_has_clear_message(tmp_path):
    import tarfile

    path = tmp_path / "pytorch_model.bin"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("pickle")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(CheckpointError, match="tar"):
        load_state_dict(tmp_path)


def test_garbage_bin_names_the_file(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError) as err:
        load_state_dict(tmp_path)
    assert str(path) in str(err.value) and not isinstance(err.value, UnsafeCheckpointError)


@pytest.mark.parametrize("cut", [0, 5, 100, -1])
def test_truncated_bin(tmp_path, cut):
    data = valid_bin(tmp_path).read_bytes()
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=str(path)):
        load_state_dict(tmp_path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save([torch.ones(2)], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_torch_bin(path)


@pytest.fixture()
def valid_safetensors(tmp_path):
    folder = tmp_path / "model"
    save_state_dict({"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, np.int64)}, folder)
    return folder / "model.safetensors"


@pytest.mark.parametrize("cut", [0, 4, 8, 20, -1, -20])
def test_truncated_safetensors(valid_safetensors, cut):
    data = valid_safetensors.read_bytes()
    valid_safetensors.write_bytes(data[:cut])
    with pytest.raises(CheckpointError) as err:
        load_state_dict(valid_safetensors.parent)
    assert str(valid_safetensors) in str(err.value) and "download or save it again" in str(err.value)


@pytest.mark.parametrize(
    "header",
    [
        b"not json at all",
        b'["a list"]',
        b'{"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 1000000]}}',
        b'{"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 8]}}',
        b'{"a": {"dtype": "X99", "shape": [3], "data_offsets": [0, 12]}}',
        b'{"a": {"dtype": "F32", "shape": [-3], "data_offsets": [0, 12]}}',
        b'{"a": {"dtype": "F32", "shape": "3", "data_offsets": [0, 12]}}',
        b'{"a": 5}',
        b'{"__metadata__": 5}',
    ],
)
def test_corrupt_safetensors_header(tmp_path, header):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    with pytest.raises(CheckpointError, match=str(path)):
        load_file(path)


def test_huge_safetensors_header_length(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="header length"):
        load_file(path)


def test_index_naming_missing_shard(tmp_path):
    save_state_dict({f"w{i}": np.ones(100, np.float32) for i in range(4)}, tmp_path, max_shard_size="500B")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) == 4
    shards[2].unlink()
    with pytest.raises(CheckpointNotFoundError) as err:
        load_state_dict(tmp_path)
    assert shards[2].name in str(err.value) and "model.safetensors.index.json" in str(err.value)


def test_index_shard_outside_the_model_is_refused(tmp_path):
    index = {"metadata": {}, "weight_map": {"w": "../../etc/passwd"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file inside the model"):
        load_state_dict(tmp_path)


@pytest.mark.parametrize("text", ["{", '{"weight_map": [1, 2]}', '{"weight_map": {"w": 3}}', "[]"])
def test_corrupt_index(tmp_path, text):
    (tmp_path / "pytorch_model.bin.index.json").write_text(text)
    with pytest.raises(CheckpointError, match="index"):
        load_state_dict(tmp_path)


def test_index_that_disagrees_with_shards(tmp_path):
    save_state_dict({"w": np.ones(3, np.float32)}, tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "model-00001-of-00001.safetensors")
    index = {"weight_map": {"w": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="ghost"):
        load_state_dict(tmp_path)


@pytest.mark.parametrize("data", [b"", b"\xc1\xc1\xc1", b"\x93\x01\x02\x03", os.urandom(200)])
def test_garbage_flax_msgpack(tmp_path, data):
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=str(path)):
        load_state_dict(tmp_path)


# ----------------------------------------------------------------------------------------------- fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@contextmanager
def time_limit(seconds: float):
    """Fail instead of hanging: SIGALRM interrupts a runaway parse."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"pickle reader ran longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _valid_bin_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(small_state(), buffer)
    return buffer.getvalue()


VALID_BIN = _valid_bin_bytes()
_legacy = io.BytesIO()
torch.save(small_state(), _legacy, _use_new_zipfile_serialization=False)
VALID_LEGACY_BIN = _legacy.getvalue()
with zipfile.ZipFile(io.BytesIO(VALID_BIN)) as _z:
    VALID_PKL = _z.read(next(n for n in _z.namelist() if n.endswith("/data.pkl")))


def _mutate(data: bytes, edits, cut) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


mutations = st.tuples(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.none() | st.integers(0, 10**6),
)
FUZZ = settings(
    max_examples=100, deadline=2000, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _load_or_clean_error(path: Path) -> None:
    with time_limit(10):
        try:
            state = load_torch_bin(path)
        except CheckpointError as err:  # UnsafeCheckpointError included
            assert str(path) in str(err)
            return
    assert isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values())


@FUZZ
@given(mutation=mutations)
def test_fuzz_file_bytes(tmp_path_factory, mutation):
    path = tmp_path_factory.mktemp("fuzz") / "pytorch_model.bin"
    path.write_bytes(_mutate(VALID_BIN, *mutation))
    _load_or_clean_error(path)


@FUZZ
@given(mutation=mutations)
def test_fuzz_pickle_stream(tmp_path_factory, mutation):
    """Mutate data.pkl itself and repack it with a valid CRC, so the mutations reach the unpickler."""
    folder = tmp_path_factory.mktemp("fuzz")
    src = folder / "valid.bin"
    src.write_bytes(VALID_BIN)
    path = folder / "pytorch_model.bin"
    rewrite_pickle(src, path, _mutate(VALID_PKL, *mutation))
    _load_or_clean_error(path)


@FUZZ
@given(mutation=mutations)
def test_fuzz_legacy_format(tmp_path_factory, mutation):
    path = tmp_path_factory.mktemp("fuzz") / "pytorch_model.bin"
    path.write_bytes(_mutate(VALID_LEGACY_BIN, *mutation))
    _load_or_clean_error(path)
