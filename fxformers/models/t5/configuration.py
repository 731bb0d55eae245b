"""T5Config and MT5Config: the fields of a T5 / mT5 config.json, with Transformers' defaults.

Two fields need care because Transformers 4 and 5 read them differently:

* ``feed_forward_proj`` is ``"<act>"`` or ``"gated-<act>"``; ``"gated-gelu"`` means the tanh GELU (``gelu_new``).
  ``dense_act_fn`` and ``is_gated_act`` are derived from it (a config.json may carry stale copies; they are
  recomputed).
* ``tie_word_embeddings``: every hub checkpoint was written by Transformers 4, where ``false`` (T5 v1.1, flan-T5,
  mT5) means an untied ``lm_head`` *and* no ``d_model**-0.5`` scaling of the decoder output. Transformers 5 turns
  that into ``scale_decoder_outputs`` and forces ``tie_word_embeddings`` to true, keeping the head untied only when
  the checkpoint stores a distinct ``lm_head.weight``. fxformers reads the Transformers 4 meaning; a config written
  by Transformers 5 (``scale_decoder_outputs`` present) is honoured as well (see ``scale_decoder_output``).
"""

from ...configuration import PretrainedConfig


class T5Config(PretrainedConfig):
    model_type = "t5"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "head_dim": "d_kv",
    }
    defaults = {
        "vocab_size": 32128,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 6,
        "num_decoder_layers": None,
        "num_heads": 8,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "classifier_dropout": 0.0,
    }

    def validate(self) -> None:
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        parts = self.feed_forward_proj.split("-")
        if (len(parts) > 1 and parts[0] != "gated") or len(parts) > 2:
            raise ValueError(
                f"feed_forward_proj={self.feed_forward_proj!r} is not valid; use '<act>' or 'gated-<act>' "
                "(e.g. 'relu', 'gated-gelu', 'gated-silu')."
            )
        self.is_gated_act = parts[0] == "gated"
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]

    def scale_decoder_output(self) -> bool:
        """Whether the decoder output is scaled by d_model**-0.5 before the LM head (the original tied T5)."""
        explicit = self.__dict__.get("scale_decoder_outputs")  # written by Transformers 5
        if explicit is not None:
            return bool(explicit)
        if self.model_type == "mt5" and _major(self.__dict__.get("transformers_version")) >= 5:
            return False  # Transformers 5 never scales mT5 and writes tie_word_embeddings=true for it
        return bool(self.tie_word_embeddings)


def _major(version) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 4


class MT5Config(T5Config):
    model_type = "mt5"
    defaults = {
        **T5Config.defaults,
        "vocab_size": 250112,
        "d_ff": 1024,
        "num_layers": 8,
        "num_heads": 6,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "decoder_start_token_id": 0,
    }
