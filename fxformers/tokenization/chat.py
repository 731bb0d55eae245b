"""Chat templates: render a conversation with the tokenizer's Jinja ``chat_template`` as Transformers does
(sandboxed Jinja, ``trim_blocks``/``lstrip_blocks``, ``tojson``, ``raise_exception``, ``strftime_now``).

A template comes with a downloaded tokenizer, so it is untrusted code: it runs in Jinja's immutable sandbox
(jinja2 >= 3.1.6 required: older versions let a template reach ``os.environ`` through ``|attr('format')``,
CVE-2025-27516), the globals it gets are plain objects that hand out nothing (no ``__globals__``), and its
resources are bounded: ``{% include %}``/``{% import %}``/``{% extends %}`` are refused when it is compiled; a
render that runs longer than ``RENDER_SECONDS``, writes more than ``MAX_OUTPUT_CHARS``, loops more than
``MAX_LOOP_ITERATIONS`` times over ``range``, builds a string or list of more than ``MAX_OUTPUT_CHARS`` items with
``*``, or recurses too deeply ends in a ``ChatTemplateError`` naming the tokenizer.

Jinja2 is imported only here, when a template is applied; it is not a dependency of the rest of fxformers.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import datetime
from typing import Any, Optional

from .base import TokenizerError

_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "

MIN_JINJA2 = (3, 1, 6)
RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 4 << 20
MAX_LOOP_ITERATIONS = 10_000_000


class ChatTemplateError(TokenizerError):
    """A chat template is refused (include/import, too slow, too large, too deep) or fails to render."""


def _jinja2():
    try:
        import jinja2
    except ImportError:
        raise ImportError("apply_chat_template needs jinja2 >= 3.1.6: `pip install 'jinja2>=3.1.6'`.") from None
    version = tuple(int(p) for p in jinja2.__version__.split(".")[:3] if p.isdigit())
    if version < MIN_JINJA2:
        raise ImportError(
            f"apply_chat_template needs jinja2 >= 3.1.6, found {jinja2.__version__}: older versions let a chat "
            "template escape the sandbox (CVE-2025-27516) and read your environment (tokens). Upgrade with "
            "`pip install -U 'jinja2>=3.1.6'`."
        )
    return jinja2


class _Budget:
    """The time, output and loop budget of one render (checked by the sandbox hooks)."""

    def __init__(self):
        self.deadline = time.monotonic() + RENDER_SECONDS
        self.iterations = 0

    def tick(self, n: int = 1) -> None:
        self.iterations += n
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise _Exceeded(f"it loops more than {MAX_LOOP_ITERATIONS} times")
        if time.monotonic() > self.deadline:
            raise _Exceeded(f"it runs longer than {RENDER_SECONDS} s")


class _Exceeded(Exception):
    pass


class _Global:
    """A function given to templates as a plain object: callable, with no ``__globals__``/``__code__`` to read."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


def _checked_size(value: Any, what: str) -> Any:
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_OUTPUT_CHARS:
        raise _Exceeded(f"{what} makes a value of more than {MAX_OUTPUT_CHARS} items")
    return value


@functools.lru_cache(maxsize=16)
def compile_template(template: str):
    jinja2 = _jinja2()
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """``{% generation %} ... {% endgeneration %}`` marks assistant text; rendered as its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        """The immutable sandbox, with ``*``/``**`` sized before they run and every call ticking the budget."""

        intercepted_binops = frozenset({"*", "**", "+"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(right, int) and abs(right) > 4096 and not (
                isinstance(left, (int, float)) and abs(left) <= 1
            ):
                raise _Exceeded(f"it raises to the power {right}")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_OUTPUT_CHARS:
                        raise _Exceeded(f"it repeats a value {n} times (more than {MAX_OUTPUT_CHARS} items)")
            return _checked_size(super().call_binop(context, operator, left, right), f"'{operator}'")

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's own signature)
            budget = getattr(_current, "budget", None)
            if budget is not None:
                budget.tick()
            return super().call(__context, __obj, *args, **kwargs)

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    try:
        parsed = env.parse(template)
    except jinja2.TemplateSyntaxError:
        raise
    for node_type in (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends):
        found = next(parsed.find_all(node_type), None)
        if found is not None:
            raise ChatTemplateError(
                f"{{% {node_type.__name__.lower()} %}} (line {found.lineno}) is not allowed in a chat template: "
                "a template cannot read other files."
            )

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    def bounded_range(*args):
        return _Range(range(*args))  # ints only: a TypeError otherwise

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _Global(raise_exception)
    env.globals["strftime_now"] = _Global(strftime_now)
    env.globals["range"] = _Global(bounded_range)
    return env.from_string(parsed)


_current = threading.local()  # .budget: the budget of this thread's render in progress


class _Range:
    """``range`` for templates: a sequence like range whose iteration ticks the render's budget (so nested empty
    loops end too)."""

    __slots__ = ("_r",)

    def __init__(self, r: range):
        self._r = r

    def __len__(self) -> int:
        return len(self._r)

    def __getitem__(self, index):
        value = self._r[index]
        return _Range(value) if isinstance(value, range) else value

    def __contains__(self, value) -> bool:
        return value in self._r

    def __iter__(self):
        budget = getattr(_current, "budget", None)
        for value in self._r:
            if budget is not None:
                budget.tick()
            yield value

    def __reversed__(self):
        return iter(_Range(self._r[::-1]))

    def __repr__(self) -> str:
        return repr(self._r)


def _render_one(compiled, source: str, **context) -> str:
    jinja2 = _jinja2()
    budget = _Budget()
    previous = getattr(_current, "budget", None)
    _current.budget = budget
    pieces, size = [], 0
    try:
        for piece in compiled.generate(**context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise _Exceeded(f"it writes more than {MAX_OUTPUT_CHARS} characters")
            budget.tick(0)
            pieces.append(piece)
    except _Exceeded as err:
        raise ChatTemplateError(f"{source} was stopped: {err}. Check the chat template; it may be hostile.") from None
    except jinja2.exceptions.TemplateError:
        raise  # raise_exception() and Jinja's own errors, as Transformers raises them
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError, AttributeError, KeyError,
            IndexError, ZeroDivisionError) as err:
        raise ChatTemplateError(f"{source} failed to render ({type(err).__name__}: {str(err)[:200]}).") from None
    finally:
        _current.budget = previous
    return "".join(pieces)


def select_template(chat_template: Any, requested: Optional[str], tools: Optional[list]) -> str:
    """The template to use: ``requested`` (a template, or the name of one of several), else the tokenizer's."""
    if isinstance(chat_template, dict):
        if requested is not None and requested in chat_template:
            return chat_template[requested]
        if requested is None:
            if tools is not None and "tool_use" in chat_template:
                return chat_template["tool_use"]
            if "default" in chat_template:
                return chat_template["default"]
            raise ValueError(
                f"This tokenizer has several chat templates and no default; pass chat_template= one of {sorted(chat_template)}."
            )
    if requested is not None:
        return requested
    if chat_template is None:
        raise ValueError(
            "This tokenizer has no chat_template: pass chat_template='...' (a Jinja template) or set "
            "tokenizer.chat_template."
        )
    return chat_template


def render(
    template: str,
    conversations: list[list[dict]],
    *,
    tools: Optional[list] = None,
    documents: Optional[list] = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool = False,
    source: str = "the chat template",
    **kwargs,
) -> list[str]:
    """Render each conversation (a list of ``{"role": ..., "content": ...}`` dicts) to a string."""
    try:
        compiled = compile_template(template)
    except ChatTemplateError as err:
        raise ChatTemplateError(f"{source}: {err}") from None
    except RecursionError as err:
        raise ChatTemplateError(f"{source} nests too deeply to compile ({err}).") from None
    if tools is not None and not all(isinstance(t, dict) for t in tools):
        raise ValueError("tools must be JSON-schema dicts (fxformers does not convert Python functions to schemas).")
    if documents is not None and not all(isinstance(d, dict) for d in documents):
        raise TypeError("documents must be a list of dicts with 'title' and 'text' keys.")
    out = []
    for chat in conversations:
        chat = [dict(m) for m in chat]
        for message in chat:
            if not isinstance(message, dict):
                raise TypeError(f"Chat messages must be dicts with 'role' and 'content', got {message!r}.")
        final = None
        if continue_final_message:
            final = chat[-1].get("content")
            if not isinstance(final, str):
                raise ValueError("continue_final_message needs a final message whose content is a string.")
            chat[-1]["content"] = final + _CONTINUE_TAG
        text = _render_one(
            compiled, source, messages=chat, tools=tools, documents=documents,
            add_generation_prompt=add_generation_prompt, **kwargs,
        )
        if continue_final_message:
            if final.strip() not in text or _CONTINUE_TAG.strip() not in text:
                raise ValueError(
                    "continue_final_message is set but the chat template dropped part of the final message; check "
                    "that the template and the final message are compatible."
                )
            loc = text.rindex(_CONTINUE_TAG.strip())
            text = text[:loc] if text[loc : loc + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:loc].rstrip()
        out.append(text)
    return out
