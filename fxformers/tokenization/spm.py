"""Read a SentencePiece model file (``spiece.model`` / ``tokenizer.model``) without the sentencepiece package.

The file is a protobuf ``ModelProto``; only the fields a tokenizer needs are decoded, straight from the protobuf
wire format: pieces (text, score, type), the trainer's model type, ids and byte fallback, and the normaliser's
precompiled character map and whitespace flags.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

import numpy as np

# SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4


@dataclass
class SpmModel:
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: int = UNIGRAM
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field of one message; length-delimited values are bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("a field runs past the end of its message")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


#: A SentencePiece normaliser's character map is a few hundred KB; a larger one is refused.
MAX_CHARSMAP_BYTES = 16 << 20
_MAX_TRIE_NODES = 1 << 20


@functools.lru_cache(maxsize=32)
def check_precompiled_charsmap(blob: bytes) -> None:
    """Refuse a precompiled character map that the tokenizers library (``spm_precompiled``) would crash on: a
    trie size past the data (it allocates that size first: gigabytes from a few bytes), or a double-array trie
    whose walk reads past its array or its string table (a Rust panic at encode time). Every node reachable
    from the root is checked against every input byte, vectorised. Raises ValueError."""
    if len(blob) > MAX_CHARSMAP_BYTES:
        raise ValueError(f"its precompiled_charsmap is {len(blob)} bytes, more than {MAX_CHARSMAP_BYTES}")
    if len(blob) < 4:
        raise ValueError("its precompiled_charsmap is shorter than its 4-byte header")
    trie_bytes = int.from_bytes(blob[:4], "little")
    if trie_bytes % 4 or trie_bytes == 0 or 4 + trie_bytes > len(blob):
        raise ValueError(f"its precompiled_charsmap declares a {trie_bytes}-byte trie in {len(blob)} bytes")
    units = np.frombuffer(blob, "<u4", trie_bytes // 4, 4).astype(np.int64)
    n_strings = len(blob) - 4 - trie_bytes
    size = len(units)

    def offset(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    chars = np.arange(1, 256, dtype=np.int64)
    frontier = np.array([offset(units[0])], dtype=np.int64)
    visited = 0
    while frontier.size:
        visited += frontier.size
        if visited > _MAX_TRIE_NODES or frontier.size > size:
            raise ValueError("its precompiled_charsmap trie is larger than any real one (or has cycles)")
        children = []
        for start in range(0, frontier.size, 4096):  # bounded memory: 4096 x 255 positions at a time
            positions = frontier[start : start + 4096, None] ^ chars[None, :]
            if (positions >= size).any():
                raise ValueError("its precompiled_charsmap trie points past its array")
            labels = units[positions] & ((1 << 31) | 0xFF)
            match = labels == chars[None, :]
            hit = units[positions[match]]
            nxt = positions[match] ^ offset(hit)
            if (nxt >= size).any():
                raise ValueError("its precompiled_charsmap trie points past its array")
            leaf = nxt[((hit >> 8) & 1).astype(bool)]
            if ((units[leaf] & ((1 << 31) - 1)) >= max(n_strings, 1)).any():
                raise ValueError("its precompiled_charsmap trie points past its string table")
            children.append(nxt)
        frontier = np.unique(np.concatenate(children)) if children else frontier[:0]


def _int32(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_spm_model(data: Union[bytes, str, Path]) -> SpmModel:
    """Decode a SentencePiece ``ModelProto`` (bytes or a file path)."""
    source = "The SentencePiece model"
    if not isinstance(data, (bytes, bytearray)):
        source = str(data)
        if Path(data).stat().st_size > _MAX_SPM_BYTES:
            raise ValueError(f"{source} is larger than {_MAX_SPM_BYTES} bytes: not a SentencePiece model file.")
        data = Path(data).read_bytes()
    try:
        return _parse_spm_model(bytes(data))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


_MAX_SPM_BYTES = 1 << 30


def _parse_spm_model(data: bytes) -> SpmModel:
    model = SpmModel()
    try:
        for number, wire, value in _fields(bytes(data)):
            if number == 1 and wire == 2:  # SentencePiece
                piece, score, typ = "", 0.0, NORMAL
                for n, w, v in _fields(value):
                    if n == 1:
                        piece = v.decode("utf-8")
                    elif n == 2 and w == 5:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        typ = v
                model.pieces.append((piece, score, typ))
            elif number == 2 and wire == 2:  # TrainerSpec
                for n, w, v in _fields(value):
                    if n == 3:
                        model.model_type = v
                    elif n == 35:
                        model.byte_fallback = bool(v)
                    elif n in (40, 41, 42, 43):
                        setattr(model, {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}[n], _int32(v))
                    elif n in (45, 46, 47, 48):
                        setattr(model, {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}[n], v.decode("utf-8"))
            elif number == 3 and wire == 2:  # NormalizerSpec
                for n, w, v in _fields(value):
                    if n == 2:
                        model.precompiled_charsmap = bytes(v)
                    elif n == 3:
                        model.add_dummy_prefix = bool(v)
                    elif n == 4:
                        model.remove_extra_whitespaces = bool(v)
    except (IndexError, UnicodeDecodeError, struct.error, ValueError) as err:
        raise ValueError(f"Not a valid SentencePiece model file ({err}).") from err
    if not model.pieces:
        raise ValueError("Not a valid SentencePiece model file: it holds no pieces.")
    if not all(-1 <= i < len(model.pieces) for i in (model.unk_id, model.bos_id, model.eos_id, model.pad_id)):
        raise ValueError(
            f"Not a valid SentencePiece model file: a special id (unk {model.unk_id}, bos {model.bos_id}, eos "
            f"{model.eos_id}, pad {model.pad_id}) is outside its {len(model.pieces)} pieces."
        )
    if model.model_type not in (UNIGRAM, BPE, WORD, CHAR):
        raise ValueError(f"Not a valid SentencePiece model file: unknown model type {model.model_type}.")
    if model.precompiled_charsmap:
        try:
            check_precompiled_charsmap(model.precompiled_charsmap)
        except ValueError as err:
            raise ValueError(f"Not a valid SentencePiece model file: {err}.") from None
    return model


def generate_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece BPE vocabulary (ordered by the merged piece's id), as Transformers
    derives them: every split of a piece into two pieces that are both in the vocabulary."""
    merges = []
    for merge, piece_id in vocab.items():
        local = []
        for index in range(1, len(merge)):
            left, right = merge[:index], merge[index:]
            if left in vocab and right in vocab:
                local.append((left, right, piece_id))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])))
    return [(l, r) for l, r, _ in merges]
