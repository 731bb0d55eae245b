"""Logits processors and filters as pure functions, with Transformers' semantics.

Every filter takes and returns ``scores [R, V]`` float32 (R rows). The sequence-aware processors read a
:class:`SequenceView`: the generated-so-far buffer and where its valid part lies, so that they work on a fixed-size
buffer inside ``lax.while_loop`` (the tokens of row r are ``sequences[r, start:length]``, a traced range).

The public filters (``top_k_filter``, ``top_p_filter``, ``min_p_filter``, ``top_k_top_p_filtering``,
``apply_temperature``, ``repetition_penalty``, ``no_repeat_ngram_mask``) are usable on their own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

NEG_INF = -float("inf")


@dataclasses.dataclass
class SequenceView:
    """The token buffer as processors see it.

    sequences [R, S] int32: the buffer; ``start`` (scalar) is its first valid column (the loop's bucketing puts filler
    before it), ``length`` (scalar) is one past the last written column, so ``length - start`` is Transformers'
    ``input_ids.shape[-1]``. ``first_token`` [R] is the column of each row's first non-padding prompt token (the
    repetition penalty ignores left padding before it, as Transformers 5 does).
    """

    sequences: Any
    start: Any
    length: Any
    first_token: Any

    @property
    def cur_len(self):
        return self.length - self.start


# -- pure filters ---------------------------------------------------------------------------------------------------
def apply_temperature(scores, temperature: float):
    return scores / temperature


def top_k_filter(scores, top_k: int, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Keep the ``max(top_k, min_tokens_to_keep)`` highest scores per row (ties with the k-th kept); 0 disables."""
    if top_k <= 0:
        return scores
    k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
    kth = jax.lax.top_k(scores, k)[0][..., -1:]  # [R, 1]
    return jnp.where(scores < kth, filter_value, scores)


def top_p_filter(scores, top_p: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Nucleus filtering: drop the lowest-probability tokens whose cumulative probability is <= 1 - top_p."""
    if top_p >= 1.0:
        return scores
    order = jnp.argsort(scores, axis=-1)  # ascending [R, V]
    sorted_scores = jnp.take_along_axis(scores, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_scores, axis=-1), axis=-1)
    remove_sorted = cumulative <= (1 - top_p)
    keep_tail = jnp.arange(scores.shape[-1]) >= scores.shape[-1] - min_tokens_to_keep
    remove_sorted = remove_sorted & ~keep_tail
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = jnp.zeros_like(remove_sorted).at[rows, order].set(remove_sorted)
    return jnp.where(remove, filter_value, scores)


def min_p_filter(scores, min_p: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Drop tokens whose probability is below ``min_p`` times the top token's."""
    probs = jax.nn.softmax(scores, axis=-1)
    remove = probs < min_p * probs.max(axis=-1, keepdims=True)
    k = min(min_tokens_to_keep, scores.shape[-1])
    top = jax.lax.top_k(probs, k)[1]  # [R, k]
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = remove.at[rows, top].set(False)
    return jnp.where(remove, filter_value, scores)


def _keep_top(remove, scores, min_tokens_to_keep: int):
    """``remove`` [R, V] but never the ``min_tokens_to_keep`` highest scores (Transformers' top-k guard)."""
    k = min(min_tokens_to_keep, scores.shape[-1])
    kth = jax.lax.top_k(scores, k)[0][..., -1:]
    return remove & (scores < kth)


def typical_filter(scores, mass: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Locally typical sampling: keep the tokens whose surprise is closest to the entropy, up to ``mass``."""
    normalized = jax.nn.log_softmax(scores, axis=-1)
    p = jnp.exp(normalized)
    ent = -jnp.nansum(normalized * p, axis=-1, keepdims=True)  # -inf * 0 = nan at filtered tokens: skipped
    shifted = jnp.abs(-normalized - ent)
    order = jnp.argsort(shifted, axis=-1)  # ascending [R, V]
    sorted_shifted = jnp.take_along_axis(shifted, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(jnp.take_along_axis(scores, order, axis=-1), axis=-1), axis=-1)
    last = jnp.minimum((cumulative < mass).sum(axis=-1, keepdims=True), scores.shape[-1] - 1)  # [R, 1]
    remove_sorted = sorted_shifted > jnp.take_along_axis(sorted_shifted, last, axis=-1)
    remove_sorted = remove_sorted & (jnp.arange(scores.shape[-1]) >= min_tokens_to_keep)
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = jnp.zeros_like(remove_sorted).at[rows, order].set(remove_sorted)
    return jnp.where(remove, filter_value, scores)


def epsilon_filter(scores, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Drop tokens with probability below ``epsilon`` (epsilon sampling)."""
    remove = _keep_top(jax.nn.softmax(scores, axis=-1) < epsilon, scores, min_tokens_to_keep)
    return jnp.where(remove, filter_value, scores)


def eta_filter(scores, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Eta sampling: drop tokens below ``min(epsilon, sqrt(epsilon) * exp(-entropy))``."""
    log_p = jax.nn.log_softmax(scores, axis=-1)
    p = jnp.exp(log_p)
    entropy = -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1, keepdims=True)
    eta = jnp.minimum(jnp.float32(epsilon), jnp.sqrt(jnp.float32(epsilon)) * jnp.exp(-entropy))
    remove = _keep_top(p < eta, scores, min_tokens_to_keep)
    return jnp.where(remove, filter_value, scores)


def sequence_bias(scores, view: "SequenceView", biases: Sequence[tuple[tuple[int, ...], float]]):
    """Add each bias to its sequence's last token when the row ends with the rest of the sequence."""
    r, v = scores.shape
    single = [(ids[0], b) for ids, b in biases if len(ids) == 1]
    bias = jnp.zeros((v,), jnp.float32)
    if single:
        bias = bias.at[jnp.asarray([i for i, _ in single])].set(jnp.asarray([b for _, b in single], jnp.float32))
    bias = jnp.broadcast_to(bias, (r, v))
    for ids, b in ((ids, b) for ids, b in biases if len(ids) > 1):
        k = len(ids) - 1
        tail = jax.lax.dynamic_slice_in_dim(view.sequences, jnp.maximum(view.length - k, 0), k, axis=1)  # [R, k]
        hit = jnp.all(tail == jnp.asarray(ids[:-1], tail.dtype)[None, :], axis=-1) & (view.cur_len >= k)  # [R]
        bias = bias.at[:, ids[-1]].add(jnp.where(hit, jnp.float32(b), 0.0))
    return scores + bias


def top_k_top_p_filtering(logits, top_k: int = 0, top_p: float = 1.0, filter_value: float = NEG_INF,
                          min_tokens_to_keep: int = 1):
    """Top-k then nucleus (top-p) filtering of ``logits [R, V]`` (Transformers 4's ``top_k_top_p_filtering``)."""
    logits = jnp.asarray(logits)
    if top_k > 0:
        logits = top_k_filter(logits, top_k, filter_value, min_tokens_to_keep)
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p, filter_value, min_tokens_to_keep)
    return logits


def token_mask(token_ids: Sequence[int], vocab_size: int):
    """[V] bool, True at ``token_ids`` (ids outside the vocabulary are ignored)."""
    ids = [int(t) for t in token_ids if 0 <= int(t) < vocab_size]
    return jnp.zeros((vocab_size,), bool).at[jnp.asarray(ids, jnp.int32)].set(True) if ids else jnp.zeros((vocab_size,), bool)


def repetition_penalty(scores, view: SequenceView, penalty: float):
    """Divide positive / multiply negative scores of every token already in the row (left padding ignored)."""
    r, v = scores.shape
    cols = jnp.arange(view.sequences.shape[1])[None, :]
    valid = (cols >= view.first_token[:, None]) & (cols < view.length)
    ids = jnp.where(valid, view.sequences, v)  # invalid -> the extra column
    seen = jnp.zeros((r, v + 1), bool).at[jnp.arange(r)[:, None], ids].set(True)[:, :v]
    penalised = jnp.where(scores < 0, scores * penalty, scores / penalty)
    return jnp.where(seen, penalised, scores)


def no_repeat_ngram_mask(view: SequenceView, ngram_size: int, vocab_size: int):
    """[R, V] bool: tokens that would complete an n-gram already present in the row."""
    seq = view.sequences
    r, s = seq.shape
    n = ngram_size
    if s < n:
        return jnp.zeros((r, vocab_size), bool)
    windows = jnp.stack([seq[:, j : s - n + 1 + j] for j in range(n)], axis=-1)  # [R, W, n]
    prefix = jax.lax.dynamic_slice_in_dim(seq, view.length - (n - 1), n - 1, axis=1) if n > 1 else seq[:, :0]  # [R, n-1]
    starts = jnp.arange(s - n + 1)
    valid = (starts >= view.start) & (starts + n <= view.length)  # whole window inside the written range
    match = jnp.all(windows[..., :-1] == prefix[:, None, :], axis=-1) & valid[None, :]  # [R, W]
    ids = jnp.where(match, windows[..., -1], vocab_size)
    banned = jnp.zeros((r, vocab_size + 1), bool).at[jnp.arange(r)[:, None], ids].set(True)[:, :vocab_size]
    return banned & (view.cur_len >= n)


def no_repeat_ngram(scores, view: SequenceView, ngram_size: int):
    return jnp.where(no_repeat_ngram_mask(view, ngram_size, scores.shape[-1]), NEG_INF, scores)


def bad_words(scores, view: SequenceView, bad_words_ids: Sequence[Sequence[int]]):
    """-inf for a bad word's last token when the row ends with the rest of it (single tokens: always)."""
    v = scores.shape[-1]
    singles = [w[0] for w in bad_words_ids if len(w) == 1]
    if singles:
        scores = jnp.where(token_mask(singles, v), NEG_INF, scores)
    for word in (w for w in bad_words_ids if len(w) > 1):
        k = len(word) - 1
        tail = jax.lax.dynamic_slice_in_dim(view.sequences, jnp.maximum(view.length - k, 0), k, axis=1)  # [R, k]
        hit = jnp.all(tail == jnp.asarray(word[:-1], tail.dtype)[None, :], axis=-1) & (view.cur_len >= k)  # [R]
        if 0 <= word[-1] < v:
            scores = scores.at[:, word[-1]].set(jnp.where(hit, NEG_INF, scores[:, word[-1]]))
    return scores


def suppress(scores, mask, when=True):
    """-inf where ``mask`` [V] (and the scalar condition ``when``) holds."""
    return jnp.where(mask[None, :] & when, NEG_INF, scores)


def force(scores, token_ids: Sequence[int], when):
    """Where ``when`` holds, every score becomes -inf except the forced tokens' (0)."""
    forced = jnp.where(token_mask(token_ids, scores.shape[-1])[None, :], 0.0, NEG_INF)
    return jnp.where(when, forced, scores)


# -- the processor list as generate() builds it ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProcessorSpec:
    """Static (hashable) settings of the processors; the order of ``build`` is Transformers' order."""

    vocab_size: int
    eos_token_ids: tuple[int, ...] = ()
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    use_min_length: bool = False
    use_min_new_tokens: bool = False
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    min_tokens_to_keep: int = 1
    renormalize_logits: bool = False
    sequence_bias: tuple[tuple[tuple[int, ...], float], ...] = ()
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0


def build(spec: ProcessorSpec) -> Callable:
    """``process(scores [R, V], view, dyn) -> scores``; ``dyn`` holds the traced lengths (see generate())."""

    def process(scores, view: SequenceView, dyn: dict):
        v = spec.vocab_size
        cur = view.cur_len
        if spec.sequence_bias:
            scores = sequence_bias(scores, view, spec.sequence_bias)
        if spec.repetition_penalty != 1.0:
            scores = repetition_penalty(scores, view, spec.repetition_penalty)
        if spec.no_repeat_ngram_size > 0:
            scores = no_repeat_ngram(scores, view, spec.no_repeat_ngram_size)
        if spec.bad_words_ids:
            scores = bad_words(scores, view, spec.bad_words_ids)
        if spec.use_min_length:
            scores = suppress(scores, token_mask(spec.eos_token_ids, v), cur < dyn["min_length"])
        if spec.use_min_new_tokens:
            scores = suppress(scores, token_mask(spec.eos_token_ids, v), cur - dyn["prompt_length"] < dyn["min_new_tokens"])
        if spec.forced_bos_token_id is not None:
            scores = force(scores, (spec.forced_bos_token_id,), cur == 1)
        if spec.forced_eos_token_ids:
            scores = force(scores, spec.forced_eos_token_ids, cur == dyn["max_length"] - 1)
        if spec.suppress_tokens:
            scores = suppress(scores, token_mask(spec.suppress_tokens, v))
        if spec.begin_suppress_tokens:
            scores = suppress(scores, token_mask(spec.begin_suppress_tokens, v), cur == dyn["begin_index"])
        if spec.do_sample:
            if spec.temperature != 1.0:
                scores = apply_temperature(scores, spec.temperature)
            if spec.top_k:
                scores = top_k_filter(scores, spec.top_k, min_tokens_to_keep=spec.min_tokens_to_keep)
            if spec.top_p < 1.0:
                scores = top_p_filter(scores, spec.top_p, min_tokens_to_keep=spec.min_tokens_to_keep)
            if spec.min_p is not None:
                scores = min_p_filter(scores, spec.min_p, min_tokens_to_keep=spec.min_tokens_to_keep)
            if spec.typical_p < 1.0:
                scores = typical_filter(scores, spec.typical_p, min_tokens_to_keep=spec.min_tokens_to_keep)
            if 0.0 < spec.epsilon_cutoff < 1.0:
                scores = epsilon_filter(scores, spec.epsilon_cutoff, min_tokens_to_keep=spec.min_tokens_to_keep)
            if 0.0 < spec.eta_cutoff < 1.0:
                scores = eta_filter(scores, spec.eta_cutoff, min_tokens_to_keep=spec.min_tokens_to_keep)
        if spec.renormalize_logits:
            scores = jax.nn.log_softmax(scores, axis=-1)
        return scores

    return process
