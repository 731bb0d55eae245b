"""BertConfig: the fields of a BERT config.json, with Transformers' defaults."""

from ...configuration import PretrainedConfig


class BertConfig(PretrainedConfig):
    model_type = "bert"
    defaults = {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
    }

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}."
            )
        if self.position_embedding_type != "absolute":
            raise NotImplementedError(
                f"position_embedding_type={self.position_embedding_type!r} is not supported (Transformers 5 dropped "
                "it too); only 'absolute' position embeddings are."
            )
