"""The training loss: softmax cross-entropy, mixed with the SuperVision head's by λ."""

import jax
import jax.numpy as jnp


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Mean softmax cross-entropy over all pixels: logsumexp of the logits minus the label's logit."""
  # optax.softmax_cross_entropy_with_integer_labels computes the same, but it drops the label axis
  # with `.take(0)`, whose gradient is a scatter that XLA:CPU constant-folds over the whole label
  # map at every compile (over a second at 256², batch 4, with an alarm line on the console).
  # A squeeze has no such gradient.
  label_logits = jnp.take_along_axis(logits, labels[..., None], axis=-1).squeeze(-1)
  return (jax.nn.logsumexp(logits, axis=-1) - label_logits).mean()


def supervision_mix(final: jnp.ndarray, supervision: jnp.ndarray, weight) -> jnp.ndarray:
  """SuperVision's loss: (1 - λ) L_final + λ L_sup, λ = `weight` (`supervision.weight`)."""
  return (1.0 - weight) * final + weight * supervision
