"""Chat templates: render a conversation with the tokenizer's Jinja ``chat_template`` as Transformers does
(sandboxed Jinja, ``trim_blocks``/``lstrip_blocks``, ``tojson``, ``raise_exception``, ``strftime_now``).

Jinja2 is imported only here, when a template is applied; it is not a dependency of the rest of fxformers.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Optional

_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@functools.lru_cache(maxsize=16)
def compile_template(template: str):
    try:
        import jinja2
        from jinja2.ext import Extension
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("apply_chat_template needs jinja2: `pip install jinja2`.") from None

    class GenerationBlock(Extension):
        """``{% generation %} ... {% endgeneration %}`` marks assistant text; rendered as its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


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
    **kwargs,
) -> list[str]:
    """Render each conversation (a list of ``{"role": ..., "content": ...}`` dicts) to a string."""
    compiled = compile_template(template)
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
        text = compiled.render(
            messages=chat, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **kwargs
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
