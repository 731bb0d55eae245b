"""Read a SentencePiece model file (``spiece.model`` / ``tokenizer.model``) without the sentencepiece package.

The file is a protobuf ``ModelProto``; only the fields a tokenizer needs are decoded, straight from the protobuf
wire format: pieces (text, score, type), the trainer's model type, ids and byte fallback, and the normaliser's
precompiled character map and whitespace flags.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

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
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _int32(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_spm_model(data: Union[bytes, str, Path]) -> SpmModel:
    """Decode a SentencePiece ``ModelProto`` (bytes or a file path)."""
    if not isinstance(data, (bytes, bytearray)):
        data = Path(data).read_bytes()
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
