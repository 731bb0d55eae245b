"""AlbertConfig: BERT's fields plus factorised embeddings and cross-layer sharing, with ALBERT's defaults."""

from ..bert.configuration import BertConfig


class AlbertConfig(BertConfig):
    model_type = "albert"
    defaults = {
        **BertConfig.defaults,
        "vocab_size": 30000,
        "embedding_size": 128,
        "hidden_size": 4096,
        "num_hidden_layers": 12,
        "num_hidden_groups": 1,  # distinct parameter sets, shared by consecutive runs of layers
        "num_attention_heads": 64,
        "intermediate_size": 16384,
        "inner_group_num": 1,  # layers inside each group, applied in turn at every step
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout_prob": 0.1,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
    }

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.num_hidden_groups <= self.num_hidden_layers:
            raise ValueError(
                f"num_hidden_groups={self.num_hidden_groups} must be between 1 and num_hidden_layers="
                f"{self.num_hidden_layers}."
            )
        if self.inner_group_num < 1:
            raise ValueError(f"inner_group_num={self.inner_group_num} must be at least 1.")

    def group_of_layer(self, i: int) -> int:
        """Which parameter group runs at step i, exactly as Transformers computes it (a float division)."""
        return int(i / (self.num_hidden_layers / self.num_hidden_groups))
