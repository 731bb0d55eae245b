"""MPNetConfig: the fields of an MPNet config.json, with Transformers' defaults."""

from ...configuration import PretrainedConfig

# Transformers' MPNetEncoder.compute_position_bias always buckets relative positions into 32 buckets (its
# num_buckets argument keeps its default), whatever relative_attention_num_buckets says.
POSITION_BUCKETS = 32


class MPNetConfig(PretrainedConfig):
    model_type = "mpnet"
    defaults = {
        "vocab_size": 30527,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "relative_attention_num_buckets": 32,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "tie_word_embeddings": True,
    }

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}."
            )
        if self.relative_attention_num_buckets < POSITION_BUCKETS:
            raise ValueError(
                f"relative_attention_num_buckets={self.relative_attention_num_buckets}: MPNet looks up "
                f"{POSITION_BUCKETS} relative position buckets (as Transformers does), so the table needs at least "
                f"{POSITION_BUCKETS} rows; set relative_attention_num_buckets >= {POSITION_BUCKETS}."
            )
