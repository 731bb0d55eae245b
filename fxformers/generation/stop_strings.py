"""``generate(stop_strings=..., tokenizer=...)``: Transformers' ``StopStringCriteria`` inside the jitted loop.

A row stops when its decoded text ends with a stop string whose last character lies in the last token (a string
met earlier does not count). Host side, :func:`build` precomputes from the tokenizer's vocabulary, as Transformers'
``_stop_string_create_embedding_vec`` does, a table [V + 2, N * (P + E) + 1] int32 (-1 = empty slot): for each
token, the positions (counted from the end of each stop string) it can occupy inside the string, the overlaps of
its start with the string's end, and its length. :func:`hits` then walks the last tokens backwards with pure array
operations (Transformers' ``StopStringCriteria.__call__``), so the check costs no host round trip.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class StopStringSpec:
    """Static shape facts of one stop-string table (the table itself is a traced argument of the program)."""

    num_strings: int  # N
    max_valid_positions: int  # P: slots per string for inside positions
    max_valid_end_lens: int  # E: slots per string for end overlaps
    window: int  # the most tokens a match can span: the longest string, in characters (bytes for byte vocabularies)
    target_lens: tuple[int, ...]  # each string's length in the same unit


_CACHE: "collections.OrderedDict[tuple, tuple[np.ndarray, StopStringSpec]]" = collections.OrderedDict()


def build(tokenizer: Any, stop_strings: str | Sequence[str]) -> tuple[np.ndarray, StopStringSpec]:
    """The table [V + 2, N * (P + E) + 1] and its spec for ``stop_strings`` under ``tokenizer``'s vocabulary."""
    strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings)
    if not strings or any(not isinstance(s, str) or not s for s in strings):
        raise ValueError(f"stop_strings must be a non-empty string or a list of non-empty strings, got {stop_strings!r}.")
    mode = _matching_mode(tokenizer)
    for_matching = strings if mode is None else tuple(s.encode("utf-8") for s in strings)
    vocab = tokenizer.get_vocab()
    key = (tuple(vocab.items()), for_matching, mode)
    if key not in _CACHE:
        tokens, indices = _clean_vocab(tokenizer, vocab, mode)
        table, positions, end_lens = _embedding_table(tokens, indices, for_matching)
        spec = StopStringSpec(len(strings), positions, end_lens, max(len(s) for s in for_matching),
                              tuple(len(s) for s in for_matching))
        _CACHE[key] = (table, spec)
        if len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _matching_mode(tokenizer: Any) -> str | None:
    """Transformers' ``_get_stop_string_matching_mode``: match bytes for byte-level / byte-fallback decoders."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return None
    state = getattr(decoder, "__getstate__", lambda: None)()
    if isinstance(state, str):
        state = state.encode()
    config = None
    if isinstance(state, bytes):
        try:
            config = json.loads(state)
        except json.JSONDecodeError:
            config = None
    if decoder.__class__.__name__ == "ByteLevel":
        return "byte_level"
    if config is not None:
        if _has_type(config, "ByteFallback"):
            return "byte_fallback"
        if _has_type(config, "ByteLevel"):
            return "byte_level"
    return None


def _has_type(config: Any, kind: str) -> bool:
    if isinstance(config, dict):
        return config.get("type") == kind or any(_has_type(v, kind) for v in config.values())
    if isinstance(config, list):
        return any(_has_type(v, kind) for v in config)
    return False


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character map, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _token_to_bytes(token: str, mode: str | None, byte_decoder: dict | None) -> bytes | None:
    if mode == "byte_level":
        if byte_decoder is not None and all(c in byte_decoder for c in token):
            return bytes(byte_decoder[c] for c in token)
        return None
    if mode == "byte_fallback":
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">") and all(
            c in "0123456789abcdefABCDEF" for c in token[3:5]
        ):
            return bytes([int(token[3:5], 16)])
    return None


def _id_to_token(tokenizer: Any, index: int) -> str:
    convert = getattr(tokenizer, "_convert_id_to_token", None)
    return convert(index) if convert is not None else tokenizer.convert_ids_to_tokens(int(index))


def _clean_vocab(tokenizer: Any, vocab: dict[str, int], mode: str | None, static_prefix: str = "abcdef"):
    """Transformers' ``clean_tokenizer_vocab``: each token as the text (or bytes) it decodes to, prefix marks such
    as "Ġ" or "▁" resolved by decoding it after a fixed prefix and cutting the prefix off."""
    byte_decoder = _byte_decoder() if mode == "byte_level" else None
    base = [_id_to_token(tokenizer, t) for t in tokenizer(static_prefix, add_special_tokens=False)["input_ids"]]
    tokens, indices = [], []
    for token, index in vocab.items():
        text = _token_to_bytes(token, mode, byte_decoder)
        if text is None:
            text = tokenizer.convert_tokens_to_string(base + [token])
            text = text[text.index(static_prefix) + len(static_prefix):]
            if mode is not None:
                text = text.encode("utf-8")
        tokens.append(text)
        indices.append(index)
    return tuple(tokens), tuple(indices)


def _matching_positions(tokens, indices, strings):
    """Per string: {token id: positions inside the string (from its end)} and {token id: end overlaps}."""
    valid, ends = {}, {}
    for string in strings:
        reversed_string = string[::-1]
        valid[string], ends[string] = {}, {}
        for token, index in zip(tokens, indices):
            reversed_token = token[::-1]
            positions, end_lens = [], []
            for i in range(1 - len(token), len(string)):
                if i < 0:
                    tok, i = reversed_token[-i:], 0
                else:
                    tok = reversed_token
                stop = reversed_string[i : i + len(tok)]
                if tok.startswith(stop):
                    if i == 0:
                        end_lens.append(min(len(tok), len(stop)))
                    else:
                        positions.append(i)
            if positions:
                valid[string][index] = positions
            if end_lens:
                ends[string][index] = end_lens
    return valid, ends


def _embedding_table(tokens, indices, strings) -> tuple[np.ndarray, int, int]:
    """Transformers' ``_stop_string_create_embedding_vec``, value for value."""
    valid, ends = _matching_positions(tokens, indices, strings)
    counts = [len(p) for per_string in valid.values() for p in per_string.values()]
    max_positions = max(counts) if counts else 1  # e.g. one-character strings have no inside positions
    end_counts = [len(e) for per_string in ends.values() for e in per_string.values()]
    if not end_counts:
        raise ValueError("No token of the tokenizer's vocabulary can end one of the stop strings "
                         f"{list(strings)!r} (unusual characters?); check the strings against the tokenizer.")
    max_end_lens = max(end_counts)
    n = len(strings)
    # one dummy row past the largest id: ids beyond the vocabulary are clamped to it and never match
    table = np.full((max(indices) + 2, n * (max_positions + max_end_lens) + 1), -1, np.int32)
    for i, string in enumerate(strings):
        for index, positions in valid[string].items():
            table[index, max_positions * i : max_positions * i + len(positions)] = positions
        base = max_positions * n + max_end_lens * i
        for index, end_lens in ends[string].items():
            table[index, base : base + len(end_lens)] = end_lens
    for token, index in zip(tokens, indices):
        table[index, -1] = len(token)
    return table, max_positions, max_end_lens


def last_tokens(sequences: jax.Array, pos: jax.Array, first: jax.Array, window: int, dummy: int) -> jax.Array:
    """The tokens at columns pos, pos - 1, ... (newest first) [R, window]; columns before ``first`` (filler, not
    part of the sequence) read as ``dummy``, which matches nothing, as a shorter sequence would."""
    cols = pos - jnp.arange(window)  # [W]
    ids = jnp.take(sequences, jnp.clip(cols, 0, sequences.shape[1] - 1), axis=1)  # [R, W]
    return jnp.where((cols >= first)[None, :], ids, dummy)


def hits(table: jax.Array, spec: StopStringSpec, flipped_ids: jax.Array) -> jax.Array:
    """Transformers' ``StopStringCriteria.__call__`` on ids newest first [R, W]: [R] bool, a stop string ends here."""
    rows, w = flipped_ids.shape
    n, p, e = spec.num_strings, spec.max_valid_positions, spec.max_valid_end_lens
    embedded = table[jnp.minimum(flipped_ids, table.shape[0] - 1)]  # [R, W, N * (P + E) + 1]
    valid_positions = embedded[:, 1:, : p * n].reshape(rows, w - 1, n, p)
    end_lengths = embedded[:, :1, p * n : -1].reshape(rows, 1, n, e)
    lengths = jnp.broadcast_to(embedded[:, 1:, None, -1:], (rows, w - 1, n, e))
    cumsum = jnp.cumsum(jnp.concatenate([end_lengths, lengths], axis=1), axis=1)  # [R, W, N, E] matched characters
    initial_match = end_lengths > 0
    later_match = jnp.any(cumsum[:, :-1, :, None, :] == valid_positions[:, :, :, :, None], axis=-2)  # [R, W-1, N, E]
    match = jnp.concatenate([initial_match, later_match], axis=1)
    alive = jnp.cumsum(~match, axis=1) == 0  # everything after the first mismatch is masked
    reached = jnp.max(cumsum * alive, axis=(1, 3))  # [R, N]
    return jnp.any(reached >= jnp.asarray(spec.target_lens, jnp.int32)[None, :], axis=-1)
