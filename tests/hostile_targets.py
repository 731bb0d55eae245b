"""Functions for ``hostile_helpers.run_isolated`` children; imported there, so the imports below happen before the
memory limit and the timing start."""

from __future__ import annotations

from fxformers import AutoTokenizer
from fxformers.tokenization.chat import render


def render_chat_template(template: str) -> str:
    """What ``apply_chat_template(tokenize=False)`` renders for a one-message chat (for ``run_isolated``)."""
    return render(template, [[{"role": "user", "content": "hi"}]], source="the chat template of 'hostile/'")[0]


def load_tokenizer_and_encode(folder: str) -> list:
    """Load a tokenizer folder and encode a text with it (a corrupt normaliser may only fail when used)."""
    return AutoTokenizer.from_pretrained(folder)("Hello wörld ﬁ ①")["input_ids"]
