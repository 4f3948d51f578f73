"""The training loss: softmax cross-entropy, mixed with the SuperVision head's by λ."""

import jax.numpy as jnp
import optax


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Mean softmax cross-entropy over all pixels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def supervision_mix(final: jnp.ndarray, supervision: jnp.ndarray, weight) -> jnp.ndarray:
  """SuperVision's loss: (1 - λ) L_final + λ L_sup, λ = `weight` (`supervision.weight`)."""
  return (1.0 - weight) * final + weight * supervision
