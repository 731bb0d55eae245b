"""BartConfig (BART, DistilBART) and MBartConfig: the fields of their config.json, with Transformers' defaults."""

from ...configuration import PretrainedConfig


class BartConfig(PretrainedConfig):
    model_type = "bart"
    attribute_map = {
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }
    defaults = {
        "vocab_size": 50265,
        "max_position_embeddings": 1024,
        "encoder_layers": 12,
        "encoder_ffn_dim": 4096,
        "encoder_attention_heads": 16,
        "decoder_layers": 12,
        "decoder_ffn_dim": 4096,
        "decoder_attention_heads": 16,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "activation_function": "gelu",
        "d_model": 1024,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "classifier_dropout": 0.0,
        "scale_embedding": False,
        "use_cache": True,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "is_encoder_decoder": True,
        "decoder_start_token_id": 2,
        "forced_eos_token_id": 2,
    }

    default_num_labels = 3  # Transformers' BART default (the MNLI heads)

    def __init__(self, **kwargs):
        if kwargs.get("id2label") is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = self.default_num_labels
        super().__init__(**kwargs)

    def validate(self) -> None:
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if self.d_model % heads:
                raise ValueError(f"d_model {self.d_model} is not a multiple of {side}_attention_heads {heads}.")


class MBartConfig(BartConfig):
    """mBART: BART's fields; pre-norm layers with final layer norms (the modeling differs, not the config)."""

    model_type = "mbart"
    default_num_labels = 2
    defaults = {
        **BartConfig.defaults,
        "vocab_size": 50265,
        "decoder_start_token_id": None,
        "forced_eos_token_id": 2,
    }
