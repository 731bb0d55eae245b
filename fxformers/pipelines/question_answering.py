"""question-answering: the best answer spans of a context, long contexts split into overlapping windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .base import Pipeline


@dataclass
class SquadExample:
    """A question and its context (Transformers' SquadExample, for the fields the pipeline reads)."""

    question_text: str
    context_text: str


def decode_spans(start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray) -> tuple:
    """The ``topk`` (start, end) token pairs by start x end probability with 0 <= end - start < max_answer_len,
    keeping only spans inside the context. ``start``, ``end``: [1, T] probabilities."""
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))  # [1, T, T]
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score=1000000, top_k=1,
                       handle_impossible_answer=False, max_answer_len=15):
    """Mask non-context tokens, softmax the start/end logits [1, T], and decode the best spans."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _example(item: Any) -> SquadExample:
    if isinstance(item, SquadExample):
        return item
    if isinstance(item, dict):
        for k in ("question", "context"):
            if k not in item:
                raise KeyError("You need to provide a dictionary with keys {question:..., context:...}")
            if item[k] is None:
                raise ValueError(f"`{k}` cannot be None")
            if isinstance(item[k], str) and len(item[k]) == 0:
                raise ValueError(f"`{k}` cannot be empty")
        return SquadExample(item["question"], item["context"])
    if hasattr(item, "question_text") and hasattr(item, "context_text"):
        return SquadExample(item.question_text, item.context_text)
    raise ValueError(f"{item} argument needs to be of type (SquadExample, dict)")


class QuestionAnsweringPipeline(Pipeline):
    """``qa(question=..., context=...)`` -> ``{"score", "start", "end", "answer"}`` (a list with ``top_k`` > 1 or
    several questions). Parameters: ``top_k``, ``doc_stride``, ``max_seq_len``, ``max_question_len``,
    ``max_answer_len``, ``handle_impossible_answer``, ``align_to_words``, ``padding``."""

    sequence_outputs = ("start", "end")
    chunked = True

    def _sanitize_parameters(self, padding=None, topk=None, top_k=None, doc_stride=None, max_answer_len=None,
                             max_seq_len=None, max_question_len=None, handle_impossible_answer=None,
                             align_to_words=None, **kwargs):
        pre: dict[str, Any] = {}
        if padding is not None:
            pre["padding"] = padding
        if doc_stride is not None:
            pre["doc_stride"] = doc_stride
        if max_question_len is not None:
            pre["max_question_len"] = max_question_len
        if max_seq_len is not None:
            pre["max_seq_len"] = max_seq_len
        post: dict[str, Any] = {}
        if topk is not None and top_k is None:
            top_k = topk
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k parameter should be >= 1 (got {top_k})")
            post["top_k"] = top_k
        if max_answer_len is not None:
            if max_answer_len < 1:
                raise ValueError(f"max_answer_len parameter should be >= 1 (got {max_answer_len}")
            post["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = handle_impossible_answer
        if align_to_words is not None:
            post["align_to_words"] = align_to_words
        return pre, {}, post

    def __call__(self, *args: Any, **kwargs: Any):
        """``qa(question=str|list, context=str|list)``, ``qa({"question", "context"})``, ``qa([dicts])`` or
        ``qa(question, context)``. One example gives one result (dict, or list with top_k > 1)."""
        examples = self._parse_inputs(args, kwargs)
        kwargs.pop("question", None)
        kwargs.pop("context", None)
        if len(examples) == 1:
            return super().__call__(examples[0], **kwargs)
        return super().__call__(examples, **kwargs)

    @staticmethod
    def _parse_inputs(args: tuple, kwargs: dict) -> list[SquadExample]:
        if args:
            if len(args) == 1:
                inputs = args[0]
            elif len(args) == 2 and {type(a) for a in args} == {str}:
                inputs = [{"question": args[0], "context": args[1]}]
            else:
                inputs = list(args)
        elif "question" in kwargs and "context" in kwargs:
            q, c = kwargs["question"], kwargs["context"]
            if isinstance(q, list) and isinstance(c, str):
                inputs = [{"question": x, "context": c} for x in q]
            elif isinstance(q, list) and isinstance(c, list):
                if len(q) != len(c):
                    raise ValueError("Questions and contexts don't have the same lengths")
                inputs = [{"question": x, "context": y} for x, y in zip(q, c)]
            elif isinstance(q, str) and isinstance(c, str):
                inputs = [{"question": q, "context": c}]
            else:
                raise ValueError("Arguments can't be understood")
        else:
            raise ValueError(f"Unknown arguments {kwargs}; pass question=... and context=...")
        if isinstance(inputs, dict):
            inputs = [inputs]
        return [_example(item) for item in inputs]

    def preprocess(self, example: Any, padding: Any = "do_not_pad", doc_stride: Optional[int] = None,
                   max_question_len: int = 64, max_seq_len: Optional[int] = None) -> list[dict]:
        example = _example(example)
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        question_first = self.tokenizer.padding_side == "right"
        enc = self.tokenizer(
            text=example.question_text if question_first else example.context_text,
            text_pair=example.context_text if question_first else example.question_text,
            padding=padding,
            truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len,
            stride=doc_stride,
            return_token_type_ids=True,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        features = []
        cls_id = self.tokenizer.cls_token_id
        for span in range(len(enc["input_ids"])):
            # p_mask: 1 for tokens that cannot be in the answer (question, special tokens), 0 for the context
            p_mask = [int(tok != 1) if question_first else 0 for tok in enc.sequence_ids(span)]
            ids = enc["input_ids"][span]
            if cls_id is not None:
                for i, tok in enumerate(ids):
                    if tok == cls_id:
                        p_mask[i] = 0  # keep CLS: some models point there for "no answer"
            feature = {"input_ids": ids, "p_mask": p_mask, "encoding": enc[span], "example": example}
            for key in ("attention_mask", "token_type_ids"):
                if key in enc:
                    feature[key] = enc[key][span]
            features.append(feature)
        return features

    def _forward(self, batch: dict) -> dict:
        out = self.model(**self.model_inputs(batch))
        return {"start": np.asarray(out.start_logits, dtype=np.float32), "end": np.asarray(out.end_logits, dtype=np.float32)}

    def postprocess(self, model_outputs: list[dict], top_k: int = 1, handle_impossible_answer: bool = False,
                    max_answer_len: int = 15, align_to_words: bool = True):
        min_null_score = 1000000  # large and positive
        answers: list[dict] = []
        for output in model_outputs:
            example = output["example"]
            attention_mask = np.asarray(output["attention_mask"])[None] if output.get("attention_mask") is not None else None
            pre_topk = top_k * 2 + 10 if align_to_words else top_k  # some candidates vanish when aligned to words
            starts, ends, scores, min_null_score = select_starts_ends(
                output["start"][None], output["end"][None], np.array(output["p_mask"])[None], attention_mask,
                min_null_score, pre_topk, handle_impossible_answer, max_answer_len,
            )
            question_first = self.tokenizer.padding_side == "right"
            enc = output["encoding"]
            offset = int(np.sum(np.asarray(output["input_ids"]) == self.tokenizer.pad_token_id)) \
                if self.tokenizer.padding_side == "left" else 0
            sequence_index = 1 if question_first else 0
            for s, e, score in zip(starts, ends, scores):
                s, e = int(s) - offset, int(e) - offset
                start_index, end_index = self.get_indices(enc, s, e, sequence_index, align_to_words)
                target = example.context_text[start_index:end_index]
                answer = next((a for a in answers if a["answer"].lower() == target.lower()), None)
                if answer:
                    answer["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
        if handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
        if len(answers) == 1:
            return answers[0]
        return answers

    @staticmethod
    def get_indices(enc: Any, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
        """Character span of tokens s..e: widened to whole words when ``align_to_words`` (and words exist)."""
        if align_to_words:
            try:
                start_word = enc.token_to_word(s)
                end_word = enc.token_to_word(e)
                return (enc.word_to_chars(start_word, sequence_index=sequence_index)[0],
                        enc.word_to_chars(end_word, sequence_index=sequence_index)[1])
            except Exception:  # some tokenizers have no words: keep to offsets
                pass
        return enc.offsets[s][0], enc.offsets[e][1]
