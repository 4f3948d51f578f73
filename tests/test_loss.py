"""The loss: softmax cross-entropy equal to optax's, and the SuperVision mix."""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
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
  # numpy's draws, and each side's value and gradient as one program, as a train step computes them
  # (eagerly, every operation and every jax.random shape is a program XLA compiles first).
  rng = np.random.default_rng(0)
  logits = 3 * rng.standard_normal((4, 16, 16, 4), np.float32)
  labels = rng.integers(0, 4, (4, 16, 16), np.int32)
  reference = lambda l: optax.softmax_cross_entropy_with_integer_labels(l, labels).mean()
  ours = lambda l: loss.cross_entropy(l, labels)
  (value, grad), (want_value, want_grad) = (jax.jit(jax.value_and_grad(f))(logits) for f in (ours, reference))
  assert float(value) == float(want_value) and 1.0 < float(value) < 10.0
  assert jnp.array_equal(grad, want_grad) and float(jnp.abs(grad).max()) > 0


def test_the_gradient_scatters_into_the_logits_only():
  # optax's `.take(0)` adds a scatter into [N, H, W, 1] with constant indices, which XLA:CPU
  # constant-folds at every compile of the train step (over a second at 256², batch 4).
  logits, labels = jnp.zeros((4, 16, 16, 4)), jnp.zeros((4, 16, 16), jnp.int32)
  grad = jax.make_jaxpr(jax.grad(lambda l: loss.cross_entropy(l, labels)))(logits)
  assert scatters(grad.jaxpr) == [(4, 16, 16, 4)]


@pytest.mark.parametrize('weight', [0.0, 0.2781, 1.0])
def test_supervision_mix_is_the_weighted_sum(weight):
  assert float(loss.supervision_mix(2.0, 6.0, weight)) == pytest.approx((1 - weight) * 2.0 + weight * 6.0)
