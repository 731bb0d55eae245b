"""Streamers for ``generate(..., streamer=...)``, with Transformers' protocol: ``put(prompt ids)``, then ``put(new
token ids)`` once per decoding step while the jitted loop runs (a host callback inside ``lax.while_loop``), then
``end()``. ``TextStreamer`` prints words as they form; ``TextIteratorStreamer`` queues them for another thread.
As in Transformers, streaming needs batch size 1 and no beam search.
"""

from __future__ import annotations

import itertools
import threading
from queue import Queue
from typing import Any, Optional

import numpy as np


class BaseStreamer:
    """Receives ``put(ids)`` calls (numpy int arrays, [1, T] for the prompt then [1] per step) and ``end()``."""

    def put(self, value: np.ndarray) -> None:
        raise NotImplementedError()

    def end(self) -> None:
        raise NotImplementedError()


class TextStreamer(BaseStreamer):
    """Prints the decoded text to stdout as soon as whole words are formed (Transformers' word heuristic)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache: list[int] = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value: Any) -> None:
        value = np.asarray(value)
        if value.ndim > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer only supports batch size 1")
        if value.ndim > 1:
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(np.atleast_1d(value).tolist())
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):  # a new line flushes the cache
            printable_text = text[self.print_len:]
            self.token_cache, self.print_len = [], 0
        elif len(text) > 0 and _is_chinese_char(ord(text[-1])):
            printable_text = text[self.print_len:]
            self.print_len += len(printable_text)
        else:  # up to the last space: a partial word may still change with the next token
            printable_text = text[self.print_len: text.rfind(" ") + 1]
            self.print_len += len(printable_text)
        self.on_finalized_text(printable_text)

    def end(self) -> None:
        if self.token_cache:
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            printable_text = text[self.print_len:]
            self.token_cache, self.print_len = [], 0
        else:
            printable_text = ""
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable_text, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """Queues the text for an iterating consumer: run ``generate`` in a thread and ``for text in streamer``."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: Optional[float] = None, **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: Queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value == self.stop_signal:
            raise StopIteration()
        return value


def _is_chinese_char(cp: int) -> bool:
    """Whether the code point is in a CJK Unified Ideographs block (printed at once, as Transformers does)."""
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
    ))


# -- the host side of the in-loop callback ----------------------------------------------------------------------------
# The compiled loop calls `emit` (a module-level function, so one program serves every streamer) with the step's
# tokens and the id under which generate() registered its streamer; XLA may run the callback on another thread.
_streamers: dict[int, BaseStreamer] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


def register(streamer: BaseStreamer) -> int:
    with _lock:
        stream_id = next(_ids) % 2**31
        _streamers[stream_id] = streamer
    return stream_id


def unregister(stream_id: int) -> None:
    with _lock:
        _streamers.pop(stream_id, None)


def emit(tokens: np.ndarray, stream_id: np.ndarray) -> None:
    """Called from inside the decoding loop with the step's tokens [1]."""
    streamer = _streamers.get(int(stream_id))
    if streamer is not None:
        streamer.put(np.asarray(tokens))
