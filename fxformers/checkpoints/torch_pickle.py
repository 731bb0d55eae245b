"""Read PyTorch ``torch.save`` checkpoints (``pytorch_model.bin``) into numpy, without importing torch.

Since torch 1.6 such a file is a zip archive (the older non-zip format is read too, see ``_load_legacy``)::

    <prefix>/data.pkl       a pickle of the state dict; tensors refer to storages by persistent id
    <prefix>/data/<key>     the raw bytes of storage <key> (stored, not compressed)
    <prefix>/byteorder      "little" or "big" (absent in old files: little)

A pickle is a program, so ``data.pkl`` is run by a restricted unpickler: ``find_class`` resolves only the few
globals a state dict needs, each to a small local function that builds a numpy array (none of torch's code
runs), and any other global raises ``UnsafeCheckpointError`` before it is even looked up. Before unpickling,
the opcode stream is scanned (``pickletools.genops``): a global outside the allow-list, a malformed or
truncated stream, or an absurd memo index is refused without running a single opcode. The scan also runs a
model of the unpickler's stack that knows, for every object, how deep it nests and how many nodes it has once
memo references are expanded: a pickle whose objects nest deeper than ``MAX_NESTING`` or expand past
``max_tree_nodes`` (a DAG of tuples built from memo references grows as 2^depth, and hashing or printing it
walks every node) is refused before it runs.

Memory is bounded too: the tensors of one file may not declare more than ``MAX_EXPANSION`` times the file's
own size (plus ``EXPANSION_SLACK``) in total, so a tiny file of stride-0 views over a one-element storage
cannot make the loader allocate gigabytes. Error messages print untrusted objects through ``reprlib`` (bounded).
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import logging
import math
import os
import pickle
import pickletools
import reprlib
import sys
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from .errors import CheckpointError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

# torch storage class name -> numpy dtype of its elements
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}

# torch dtype attribute name -> numpy dtype (named by _rebuild_tensor_v3, used for uint16/32/64 and float8)
TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "int64": np.dtype(np.int64),
    "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
}

#: The deepest object nesting a state-dict pickle may build (torch's own files nest about 6 deep).
MAX_NESTING = 100
#: The tensors of one file may declare at most this many times the file's size in bytes, plus the slack:
#: tied weights (two names, one storage) double a file's bytes; stride-0 expansions of a tiny storage are refused.
MAX_EXPANSION = 4
EXPANSION_SLACK = 16 << 20

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 80, 80, 40


def short_repr(obj: Any) -> str:
    """A bounded-size repr of an untrusted object (a full repr of a memo-built DAG can take for ever)."""
    try:
        return _SHORT.repr(obj)
    except Exception:
        return f"<{type(obj).__name__}>"


def max_tree_nodes(pickle_size: int) -> int:
    """The most nodes the objects of a pickle of ``pickle_size`` bytes may expand to (memo references included)."""
    return 1_000_000 + 16 * pickle_size


class _Budget:
    """The bytes the tensors of one file may still declare (see ``MAX_EXPANSION``)."""

    __slots__ = ("path", "file_size", "left")

    def __init__(self, path: str, file_size: int):
        self.path, self.file_size = path, file_size
        self.left = MAX_EXPANSION * file_size + EXPANSION_SLACK

    def spend(self, nbytes: int, size: tuple) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise CheckpointError(
                f"{self.path}: its tensors declare more than {MAX_EXPANSION}x the file's {self.file_size} bytes "
                f"(the tensor of size {short_repr(size)} went over): a file of expanded (stride-0) views of tiny "
                "storages, refused before allocating the memory. A real checkpoint stores its tensors' data."
            )


def _no_state(self, state):
    # BUILD on a stand-in would let the pickle overwrite its attributes (or a function's __defaults__)
    raise pickle.UnpicklingError(f"a {type(self).__name__} cannot be given state")


class _StorageType:
    """Stands for ``torch.FloatStorage`` & co. in the pickle; only carries the element dtype."""

    __slots__ = ("name", "dtype")
    __setstate__ = _no_state

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype


class _TorchDType:
    """Stands for ``torch.float32`` & co. in the pickle."""

    __slots__ = ("name", "dtype")
    __setstate__ = _no_state

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype


class _Function:
    """An allowed function as the pickle sees it: callable with positional arguments, nothing else; a fresh
    one per lookup, so nothing a pickle does to it outlives the load."""

    __slots__ = ("_fn",)
    __setstate__ = _no_state

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)


class _Storage:
    """A storage: a flat numpy array of its elements. In the legacy format the data follows the pickle, so
    ``array`` is None until it is read; a legacy storage *view* is a slice ``[start, start + length)`` of
    another storage."""

    __slots__ = ("key", "array", "dtype", "numel", "base", "start", "budget")

    def __init__(self, key: str, array: np.ndarray | None, dtype: np.dtype, numel: int, base=None, start: int = 0,
                 budget: _Budget | None = None):
        self.key, self.array, self.dtype, self.numel, self.base, self.start = key, array, dtype, numel, base, start
        self.budget = budget

    __setstate__ = _no_state

    def resolve(self) -> np.ndarray:
        if self.array is None and self.base is not None:
            base = self.base.resolve()
            if self.start + self.numel > base.size:
                raise pickle.UnpicklingError(f"storage view {self.key} reaches past storage {self.base.key}")
            self.array = base[self.start : self.start + self.numel]
        if self.array is None:
            raise pickle.UnpicklingError(f"the data of storage {self.key} is missing")
        return self.array


class _Pending:
    """A tensor whose storage data has not been read yet (legacy format)."""

    __slots__ = ("args",)

    def __init__(self, *args):
        self.args = args

    __setstate__ = _no_state

    def materialize(self) -> np.ndarray:
        return _tensor_from_storage(*self.args)


def _is_int(x: Any) -> bool:
    return type(x) is int


def _tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None) -> np.ndarray:
    """The numpy array that ``torch.Tensor.set_(storage, offset, size, stride)`` would view, as a numpy view
    when it is a contiguous run of the storage, a copy otherwise. Offsets and strides count elements."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor storage is a {type(storage).__name__}, not a storage")
    if storage.array is None:
        storage.resolve()
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise pickle.UnpicklingError("tensor size and stride must be tuples of the same length")
    if not (_is_int(offset) and offset >= 0 and all(_is_int(d) and d >= 0 for d in size + stride)):
        raise pickle.UnpicklingError(
            f"invalid tensor geometry offset={short_repr(offset)} size={short_repr(size)} stride={short_repr(stride)}"
        )
    flat = storage.array
    if dtype is not None and dtype != flat.dtype:  # _rebuild_tensor_v3: an untyped (byte) storage + a dtype
        if flat.dtype != np.uint8 or flat.size % dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {storage.key} cannot be viewed as {dtype}")
        flat = flat.view(dtype)
    if len(size) > 64:
        raise pickle.UnpicklingError(f"tensor has {len(size)} dimensions")
    numel = math.prod(size)
    if storage.budget is not None:
        storage.budget.spend(numel * flat.dtype.itemsize, size)
    if numel == 0:
        return np.empty(size, dtype=flat.dtype)
    last = offset + sum((d - 1) * s for d, s in zip(size, stride))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size}, stride {stride} at offset {offset} reaches past storage {storage.key} "
            f"of {flat.size} elements"
        )
    contiguous = []
    running = 1
    for d in reversed(size):
        contiguous.append(running)
        running *= d
    if all(s == c or d == 1 for s, c, d in zip(stride, reversed(contiguous), size)):
        return flat[offset : offset + numel].reshape(size)
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.array(view, copy=True)


def _tensor(storage, offset, size, stride, dtype) -> np.ndarray | _Pending:
    if isinstance(storage, _Storage) and storage.array is None and (storage.base is None or storage.base.array is None):
        return _Pending(storage, offset, size, stride, dtype)  # legacy format: data not read yet
    return _tensor_from_storage(storage, offset, size, stride, dtype)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if metadata:
        raise pickle.UnpicklingError(
            f"tensors with metadata {short_repr(metadata)} (conjugate/negative views) are not supported"
        )
    return _tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    if not isinstance(dtype, _TorchDType):
        raise pickle.UnpicklingError(f"tensor dtype {short_repr(dtype)} is not a torch dtype")
    if metadata:
        raise pickle.UnpicklingError(
            f"tensors with metadata {short_repr(metadata)} (conjugate/negative views) are not supported"
        )
    return _tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, (np.ndarray, _Pending)):
        raise pickle.UnpicklingError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


def _device(*args):
    return str(args[0]) if args else "cpu"


_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): _device,
}


def _allowed_global(module: str, name: str) -> Any:
    """A fresh stand-in for an allowed global, or None. This is the whole allow-list."""
    if (module, name) in _FUNCTIONS:
        return _Function(_FUNCTIONS[module, name])
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict  # an immutable built-in type: BUILD cannot change it
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(name, STORAGE_DTYPES[name])
    if module == "torch.storage" and name == "UntypedStorage":
        return _StorageType(name, STORAGE_DTYPES[name])
    if module == "torch" and name in TORCH_DTYPES:
        return _TorchDType(name, TORCH_DTYPES[name])
    return None


def _refuse(path: Path | str, module: str, name: str) -> UnsafeCheckpointError:
    # protocol-2 pickles spell some Python 3 names the Python 2 way (__builtin__.eval): report the real name
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return UnsafeCheckpointError(
        f"{path} asks to load the Python global '{module}.{name}', which a PyTorch state dict never needs; "
        "refusing the file (nothing in it was executed). Its pickle may run arbitrary code: only load it with "
        "torch.load(weights_only=False) if you trust its author, or ask for a safetensors version.",
        file=str(path),
        global_name=f"{module}.{name}",
    )


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict: allows only the state-dict globals, maps storages to numpy arrays.

    ``load_storage(key, dtype, numel)`` returns a storage's flat array (zip format), or None when the data
    comes after the pickle (legacy format, where persistent ids also carry a view of their storage).
    """

    def __init__(self, file, *, path: str, load_storage=None, budget: _Budget | None = None):
        super().__init__(io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file)
        self._path = path
        self._load_storage = load_storage
        self._budget = budget
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_global(module, name)
        if found is None:
            raise _refuse(self._path, module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6)) or (len(pid) == 6) != (self._load_storage is None):
            raise pickle.UnpicklingError(f"unexpected persistent id {short_repr(pid)}")
        typename, storage_type, key, _location, numel = pid[:5]
        if isinstance(typename, bytes):
            typename = typename.decode("ascii", "replace")
        if typename != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {short_repr(pid)}")
        if not (isinstance(key, str) and _is_int(numel) and numel >= 0):
            raise pickle.UnpicklingError(f"invalid storage reference {short_repr(pid)}")
        dtype = storage_type.dtype
        storage = self.storages.get(key)
        if storage is None:
            array = self._load_storage(key, dtype, numel) if self._load_storage is not None else None
            storage = self.storages[key] = _Storage(key, array, dtype, numel, budget=self._budget)
        elif storage.dtype != dtype or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is referenced with two different types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3):
            raise pickle.UnpicklingError(f"invalid storage view {short_repr(view)}")
        view_key, start, length = view
        if not (isinstance(view_key, str) and _is_int(start) and _is_int(length) and start >= 0 and length >= 0):
            raise pickle.UnpicklingError(f"invalid storage view {short_repr(view)}")
        if start + length > numel:
            raise pickle.UnpicklingError(f"storage view {view_key} reaches past storage {key}")
        existing = self.storages.get(view_key)
        if existing is None:
            existing = self.storages[view_key] = _Storage(
                view_key, None, dtype, length, base=storage, start=start, budget=self._budget
            )
        return existing


def _string_value(op_name: str, arg: Any) -> str | None:
    return arg if op_name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE") else None


class _Node:
    """What the scan knows of an object on the unpickler's stack: its nesting depth and its node count once
    memo references are expanded (a container changed after it was memoised changes in place)."""

    __slots__ = ("depth", "nodes")

    def __init__(self, depth: int, nodes: int):
        self.depth, self.nodes = depth, nodes


_MARK = object()
_LEAF = _Node(0, 1)  # shared: never changed in place (only containers are)
# opcodes that add to the container under their arguments instead of making a new object
_MUTATORS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_NO_STACK_EFFECT = frozenset({"FRAME", "PROTO", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "READONLY_BUFFER",
                              "READWRITE_BUFFER"})


class _StackModel:
    """A model of the unpickler's stack and memo for ``scan_pickle``: it refuses objects nested deeper than
    ``MAX_NESTING`` or expanding past ``max_nodes`` nodes, and memo references to nothing."""

    def __init__(self, max_nodes: int):
        self.stack: list[Any] = []
        self.memo: dict[int, _Node] = {}
        self.max_nodes = max_nodes

    def _pop(self) -> Any:
        if not self.stack:
            raise pickle.UnpicklingError("the pickle pops from an empty stack")
        return self.stack.pop()

    def _pop_to_mark(self) -> list[_Node]:
        items = []
        while True:
            item = self._pop()
            if item is _MARK:
                return items
            items.append(item)

    def _top(self) -> _Node:
        if not self.stack or self.stack[-1] is _MARK:
            raise pickle.UnpicklingError("the pickle memoises an empty stack")
        return self.stack[-1]

    def _check(self, node: _Node) -> _Node:
        if node.depth > MAX_NESTING:
            raise pickle.UnpicklingError(f"its objects nest more than {MAX_NESTING} levels deep")
        if node.nodes > self.max_nodes:
            raise pickle.UnpicklingError(
                f"its memo references build an object of more than {self.max_nodes} nodes (a DAG that hashing or "
                "printing would walk for ever)"
            )
        return node

    def step(self, op: pickletools.OpcodeInfo, memo_index: int | None) -> None:
        name = op.name
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[memo_index] = self._top()
            return
        if name in _NO_STACK_EFFECT:
            return
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if memo_index not in self.memo:
                raise pickle.UnpicklingError(f"memo entry {memo_index} is read before it is written")
            self.stack.append(self.memo[memo_index])
            return
        before = op.stack_before
        popped: list[Any] = []
        if pickletools.markobject in before:
            popped = self._pop_to_mark()
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        popped += [self._pop() for _ in range(below)]
        if any(item is _MARK for item in popped):
            raise pickle.UnpicklingError(f"{name} finds a MARK where it needs an object")
        after = op.stack_after
        if name == "DUP":
            self.stack += popped * 2
        elif name == "MARK":
            self.stack.append(_MARK)
        elif not after:
            pass
        elif name in _MUTATORS:  # the container is the deepest of the popped items
            container, added = popped[-1], popped[:-1]
            if container is _LEAF:
                container = _Node(0, 1)
            container.nodes += sum(n.nodes for n in added)
            container.depth = max([container.depth] + [n.depth + 1 for n in added])
            self.stack.append(self._check(container))
        elif popped:
            node = _Node(1 + max(n.depth for n in popped), 1 + sum(n.nodes for n in popped))
            self.stack.append(self._check(node))
        else:
            self.stack.append(_Node(0, 1) if after[0] in _CONTAINERS else _LEAF)


_CONTAINERS = (pickletools.pylist, pickletools.pydict, pickletools.pyset, pickletools.pytuple)


def scan_pickle(data: bytes | io.BufferedIOBase, path: str, limit: int | None = None) -> None:
    """Refuse a pickle before running it: disallowed globals, malformed opcodes, absurd memo indices, objects
    nested deeper than ``MAX_NESTING`` or expanding (through memo references) past ``max_tree_nodes``.

    ``data`` is the pickle's bytes, or a file positioned at its start (read up to its STOP opcode).
    """
    if limit is None:
        limit = len(data)
    model = _StackModel(max_tree_nodes(limit))
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # values of the last pushes, enough to resolve STACK_GLOBAL's two strings
    n_ops = 0
    try:
        for op, arg, _pos in pickletools.genops(data):
            n_ops += 1
            name = op.name
            memo_index = None
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                if _allowed_global(module, attr) is None:
                    raise _refuse(path, module, attr)
            elif name == "STACK_GLOBAL":
                module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise _refuse_computed(path)
                if _allowed_global(module, attr) is None:
                    raise _refuse(path, module, attr)
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise _refuse(path, "copyreg", f"extension code {arg}")
            elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                memo_index = len(memo) if name == "MEMOIZE" else int(arg)
                if memo_index > limit:
                    raise pickle.UnpicklingError(f"memo index {memo_index} is larger than the pickle itself")
                memo[memo_index] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                memo_index = int(arg)
                recent.append(memo.get(memo_index))
            elif name not in ("FRAME", "PROTO", "STOP"):
                recent.append(_string_value(name, arg))
            if len(recent) > 8:
                del recent[:-4]
            model.step(op, memo_index)
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # genops: ValueError on a malformed or truncated stream; the model: UnpicklingError
        raise CheckpointError(
            f"{path} is not a valid PyTorch checkpoint: its pickle is malformed ({err}). The file is probably "
            "truncated or corrupt: delete it and download or save it again."
        ) from err
    if n_ops == 0:
        raise CheckpointError(f"{path} is not a valid PyTorch checkpoint: its pickle is empty.")


def _refuse_computed(path: Path | str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path} asks to load a Python global whose name is computed while unpickling (a STACK_GLOBAL not "
        "preceded by two plain strings), which a PyTorch state dict never does; refusing the file (nothing in it "
        "was executed). Only load it with torch.load(weights_only=False) if you trust its author.",
        file=str(path),
        global_name="<computed>",
    )


_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC = _LEGACY_MAGIC_NUMBER.to_bytes(10, "little")
_LEGACY_PROTOCOL = 1001


def _is_legacy(head: bytes) -> bool:
    return head.startswith(b"\x80") and _LEGACY_MAGIC in head[:32]


def _not_zip_error(path: Path, head: bytes) -> CheckpointError:
    if len(head) >= 262 and head[257:262] == b"ustar":
        return CheckpointError(
            f"{path} uses PyTorch's oldest (tar) serialization, which fxformers does not read. Re-save it with a "
            "recent torch (torch.save(torch.load(path, weights_only=True), path)) or convert it to safetensors."
        )
    return CheckpointError(
        f"{path} is not a PyTorch checkpoint (neither the zip archive that torch.save writes nor its legacy "
        "format). The file is probably truncated, corrupt or not a model file: delete it and download or save "
        "it again."
    )


class _BoundedReader:
    """A file view whose reads never ask for more than the file holds (a corrupt length prefix in a pickle
    would otherwise make ``read(n)`` allocate ``n`` bytes first)."""

    def __init__(self, f, size: int):
        self._f, self._size = f, size

    def _cap(self, n: int | None) -> int:
        remaining = max(self._size - self._f.tell(), 0)
        return remaining if n is None or n < 0 else min(n, remaining)

    def read(self, n: int | None = -1) -> bytes:
        return self._f.read(self._cap(n))

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        return self._f.readinto(view[: self._cap(len(view))])

    def readline(self, n: int | None = -1) -> bytes:
        return self._f.readline(self._cap(n))

    def tell(self) -> int:
        return self._f.tell()


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    """torch.save's pre-1.6 format: pickles of (magic number, protocol, sys info, the object, storage keys),
    then for each storage key a little-endian int64 element count and the raw little-endian data."""
    size = path.stat().st_size
    budget = _Budget(str(path), size)
    with open(path, "rb") as f:
        bounded = _BoundedReader(f, size)

        def restricted_load() -> tuple[Any, RestrictedUnpickler]:
            start = f.tell()
            scan_pickle(bounded, str(path), limit=size)
            f.seek(start)
            unpickler = RestrictedUnpickler(bounded, path=str(path), load_storage=None, budget=budget)
            return unpickler.load(), unpickler

        if restricted_load()[0] != _LEGACY_MAGIC_NUMBER:
            raise CheckpointError(f"{path}: invalid magic number; the file is corrupt.")
        protocol = restricted_load()[0]
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unknown legacy torch protocol {short_repr(protocol)}.")
        restricted_load()  # sys info: endianness and type sizes of the writer
        result, unpickler = restricted_load()
        keys, _ = restricted_load()
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise CheckpointError(f"{path}: the storage key list is corrupt.")
        for key in keys:
            storage = unpickler.storages.get(key)
            if storage is None or storage.base is not None or storage.array is not None:
                raise CheckpointError(f"{path}: storage {key!r} is listed but not used, or listed twice.")
            count = f.read(8)
            numel = int.from_bytes(count, "little") if len(count) == 8 else -1
            nbytes = numel * storage.dtype.itemsize
            if numel != storage.numel or f.tell() + nbytes > size:
                raise CheckpointError(f"{path}: storage {key} is cut short or does not match its tensors.")
            array = np.empty(numel, dtype=storage.dtype)
            if nbytes and f.readinto(memoryview(array.view(np.uint8))) != nbytes:
                raise CheckpointError(f"{path}: storage {key} is cut short.")
            if sys.byteorder == "big" and storage.dtype.itemsize > 1:
                array = array.view(f"u{storage.dtype.itemsize}").byteswap().view(storage.dtype)
            storage.array = array
    return _as_state_dict(result, path)


def load_torch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict in a ``torch.save`` zip file (``pytorch_model.bin``), as numpy arrays, torch-free.

    Raises UnsafeCheckpointError when the pickle names a global outside the state-dict allow-list, and
    CheckpointError (naming the file) when the file is not a readable torch zip checkpoint.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    if not head.startswith(b"PK"):
        if not _is_legacy(head):
            raise _not_zip_error(path, head)
        try:
            return _load_legacy(path)
        except (UnsafeCheckpointError, CheckpointError):
            raise
        except Exception as err:  # anything a hostile or corrupt pickle can provoke
            raise CheckpointError(
                f"{path} is not a valid PyTorch checkpoint ({type(err).__name__}: {err}). The file is probably "
                "truncated or corrupt: delete it and download or save it again."
            ) from err
    try:
        archive = zipfile.ZipFile(path)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a valid PyTorch checkpoint: the zip archive is unreadable ({err}). The file is "
            "probably truncated or corrupt: delete it and download or save it again."
        ) from err
    with archive:
        try:
            return _load_from_archive(archive, path)
        except (UnsafeCheckpointError, CheckpointError):
            raise
        except Exception as err:  # anything a hostile or corrupt archive/pickle can provoke
            raise CheckpointError(
                f"{path} is not a valid PyTorch checkpoint ({type(err).__name__}: {err}). The file is probably "
                "truncated or corrupt: delete it and download or save it again."
            ) from err


def _load_from_archive(archive: zipfile.ZipFile, path: Path) -> dict[str, np.ndarray]:
    names = archive.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{path} is a zip archive but not a torch.save checkpoint (expected one '<name>/data.pkl', "
            f"found {len(pickles)}). Is it the right file?"
        )
    prefix = pickles[0][: -len("data.pkl")]
    archive_size = path.stat().st_size

    def read_record(name: str, limit: int) -> bytes:
        info = archive.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: record {name} is compressed, which torch.save never does")
        if info.file_size > limit:
            raise CheckpointError(f"{path}: record {name} claims {info.file_size} bytes, more than the file holds")
        return archive.read(name)

    data_pkl = read_record(pickles[0], archive_size)
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = read_record(prefix + "byteorder", 16).decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byte order {byteorder!r}")
    swap = byteorder != sys.byteorder

    def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        name = f"{prefix}data/{key}"
        try:
            info = archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{path}: storage record {name} is missing from the archive") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: record {name} is compressed, which torch.save never does")
        nbytes = numel * dtype.itemsize
        if nbytes > archive_size:
            raise CheckpointError(
                f"{path}: storage {key} declares {numel} {dtype} elements ({nbytes} bytes), more than the whole "
                f"file's {archive_size} bytes"
            )
        if info.file_size != nbytes:
            raise CheckpointError(
                f"{path}: storage {key} should hold {numel} {dtype} elements ({nbytes} bytes), the archive "
                f"holds {info.file_size} bytes"
            )
        out = np.empty(numel, dtype=dtype)
        if nbytes:
            with archive.open(info) as record:
                got = record.readinto(memoryview(out.view(np.uint8)))
            if got != nbytes:
                raise CheckpointError(f"{path}: storage {key} is cut short")
        if swap and dtype.itemsize > 1:
            out = out.view(f"u{dtype.itemsize}").byteswap().view(dtype)
        return out

    scan_pickle(data_pkl, str(path))
    budget = _Budget(str(path), archive_size)
    result = RestrictedUnpickler(data_pkl, path=str(path), load_storage=load_storage, budget=budget).load()
    return _as_state_dict(result, path)


def _as_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors).")
    state: dict[str, np.ndarray] = {}
    skipped = []
    for key, value in obj.items():
        if isinstance(value, _Pending):
            value = value.materialize()
        if isinstance(key, str) and isinstance(value, np.ndarray):
            state[key] = value
        else:
            skipped.append(key)
    if skipped:
        if not state:
            raise CheckpointError(
                f"{path} holds a dict without tensors (keys {short_repr(skipped[:5])}...); it is not a model state dict "
                "(a training checkpoint keeps the weights under a key such as 'model' or 'state_dict')."
            )
        logger.warning("%s: ignored %d entries that are not tensors: %s", path, len(skipped), short_repr(skipped[:10]))
    return state
