"""frem_jax: U-Net+SE with the Feature Random Enhancement Module (FREM) in JAX/Flax."""

__version__ = "0.1.0"
