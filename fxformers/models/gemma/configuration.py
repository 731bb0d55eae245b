"""Gemma (1) config: the Llama field set with Gemma's defaults (tied head, gelu, head_dim 256).

Rope settings are read in both spellings (``rope_parameters`` of Transformers 5, ``rope_theta`` + ``rope_scaling``
before it). The official releases say ``hidden_act: "gelu"`` but mean the tanh approximation; Transformers 5 rewrites
it to ``gelu_pytorch_tanh`` and so do we. ``hidden_activation`` (Transformers 4's override) is kept but, as in
Transformers 5, not read by Gemma 1.
"""

from __future__ import annotations

import logging

from ..llama.configuration import LlamaConfig

logger = logging.getLogger(__name__)


class GemmaConfig(LlamaConfig):
    model_type = "gemma"
    defaults = {
        **LlamaConfig.defaults,
        "vocab_size": 256000,
        "hidden_size": 3072,
        "intermediate_size": 24576,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "head_dim": 256,
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "tie_word_embeddings": True,
        "use_bidirectional_attention": None,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.hidden_act == "gelu":
            logger.warning('Gemma config says hidden_act="gelu", which the releases mean as the tanh approximation; '
                           'using "gelu_pytorch_tanh" as Transformers does.')
            self.hidden_act = "gelu_pytorch_tanh"

    def validate(self) -> None:
        super().validate()
        self.check_bidirectional()

    def check_bidirectional(self) -> None:
        if getattr(self, "use_bidirectional_attention", None):
            raise NotImplementedError(
                f"{type(self).__name__}: use_bidirectional_attention=True (encoder-style Gemma) is not supported; "
                "fxformers runs Gemma as a causal decoder. Set it to false or null."
            )
