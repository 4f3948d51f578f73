"""The loss: softmax cross-entropy equal to optax's, and the SuperVision mix."""

import jax
import jax.extend.core
import jax.numpy as jnp
import optax
import pytest

from frem_jax import loss


def scatters(jaxpr) -> list:
  """The output shapes of every scatter in a jaxpr, nested calls included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name.startswith('scatter'):
      found.append(tuple(eqn.outvars[0].aval.shape))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += scatters(sub)
  return found


def test_cross_entropy_and_its_gradient_equal_optax():
  k1, k2 = jax.random.split(jax.random.key(0))
  logits = 3 * jax.random.normal(k1, (4, 16, 16, 4))
  labels = jax.random.randint(k2, (4, 16, 16), 0, 4)
  reference = lambda l: optax.softmax_cross_entropy_with_integer_labels(l, labels).mean()
  ours = lambda l: loss.cross_entropy(l, labels)
  assert float(ours(logits)) == float(reference(logits))
  assert jnp.array_equal(jax.grad(ours)(logits), jax.grad(reference)(logits))


def test_the_gradient_scatters_into_the_logits_only():
  # optax's `.take(0)` adds a scatter into [N, H, W, 1] with constant indices, which XLA:CPU
  # constant-folds at every compile of the train step (over a second at 256², batch 4).
  logits, labels = jnp.zeros((4, 16, 16, 4)), jnp.zeros((4, 16, 16), jnp.int32)
  grad = jax.make_jaxpr(jax.grad(lambda l: loss.cross_entropy(l, labels)))(logits)
  assert scatters(grad.jaxpr) == [(4, 16, 16, 4)]


@pytest.mark.parametrize('weight', [0.0, 0.2781, 1.0])
def test_supervision_mix_is_the_weighted_sum(weight):
  assert float(loss.supervision_mix(2.0, 6.0, weight)) == pytest.approx((1 - weight) * 2.0 + weight * 6.0)
