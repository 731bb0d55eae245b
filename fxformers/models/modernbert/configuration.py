"""ModernBertConfig: the fields of a ModernBERT config.json, in both spellings Transformers reads.

Transformers 4 checkpoints carry ``global_attn_every_n_layers``, ``global_rope_theta``, ``local_rope_theta`` and
``local_attention``; Transformers 5 saves ``layer_types`` and per-type ``rope_parameters`` instead. Both are read.
"""

from types import SimpleNamespace

from ...configuration import PretrainedConfig

DEFAULT_THETA = {"full_attention": 160_000.0, "sliding_attention": 10_000.0}


class ModernBertConfig(PretrainedConfig):
    model_type = "modernbert"
    defaults = {
        "vocab_size": 50368,
        "hidden_size": 768,
        "intermediate_size": 1152,
        "num_hidden_layers": 22,
        "num_attention_heads": 12,
        "hidden_activation": "gelu",
        "max_position_embeddings": 8192,
        "initializer_range": 0.02,
        "initializer_cutoff_factor": 2.0,
        "norm_eps": 1e-5,
        "norm_bias": False,
        "pad_token_id": 50283,
        "eos_token_id": 50282,
        "bos_token_id": 50281,
        "cls_token_id": 50281,
        "sep_token_id": 50282,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "layer_types": None,
        "rope_parameters": None,
        "global_attn_every_n_layers": 3,
        "global_rope_theta": None,
        "local_rope_theta": None,
        "local_attention": 128,
        "embedding_dropout": 0.0,
        "mlp_bias": False,
        "mlp_dropout": 0.0,
        "decoder_bias": True,
        "classifier_pooling": "cls",
        "classifier_dropout": 0.0,
        "classifier_bias": False,
        "classifier_activation": "gelu",
        "deterministic_flash_attn": False,
        "sparse_prediction": False,
        "sparse_pred_ignore_index": -100,
        "tie_word_embeddings": True,
    }

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}."
            )
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}.")
        unknown = set(self.attention_types()) - {"full_attention", "sliding_attention"}
        if unknown:
            raise ValueError(f"layer_types holds {sorted(unknown)}; use 'full_attention' or 'sliding_attention'.")

    def attention_types(self) -> list:
        """Each layer's kind: every ``global_attn_every_n_layers``-th layer (from 0) global, the rest windowed."""
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers.")
            return list(self.layer_types)
        n = self.global_attn_every_n_layers
        return ["sliding_attention" if i % n else "full_attention" for i in range(self.num_hidden_layers)]

    def window(self) -> int:
        """Half window: a windowed layer attends to keys with |query - key| <= local_attention // 2."""
        return self.local_attention // 2

    def rope_config(self, layer_type: str) -> SimpleNamespace:
        """A config view with this layer type's ``rope_parameters`` (for fxformers.ops.rotary)."""
        params = dict((self.rope_parameters or {}).get(layer_type) or {"rope_type": "default"})
        legacy = self.global_rope_theta if layer_type == "full_attention" else self.local_rope_theta
        params.setdefault("rope_theta", legacy if legacy is not None else DEFAULT_THETA[layer_type])
        return SimpleNamespace(rope_parameters=params, max_position_embeddings=self.max_position_embeddings)
