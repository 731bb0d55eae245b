"""fxformers: Hugging Face Transformers, as pure JAX functions over plain pytrees."""

__version__ = "0.1.0"
