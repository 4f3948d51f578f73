"""BatchRenorm against a NumPy reference of Ioffe (2017)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax.model.batch_renorm import BatchRenorm

EPS = 1e-5


def reference_train(x, ra_mean, ra_var, scale, bias, r_max, d_max, momentum):
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))
  std = np.sqrt(var + EPS)
  running_std = np.sqrt(ra_var + EPS)
  r = np.clip(std / running_std, 1 / r_max, r_max)
  d = np.clip((mean - ra_mean) / running_std, -d_max, d_max)
  y = ((x - mean) / std * r + d) * scale + bias
  new_mean = momentum * ra_mean + (1 - momentum) * mean
  new_var = momentum * ra_var + (1 - momentum) * var
  return y, new_mean, new_var, r, d


def make_variables(rng, channels, steps):
  return {
      'params': {'scale': rng.uniform(0.5, 2.0, channels).astype(np.float32),
                 'bias': rng.normal(size=channels).astype(np.float32)},
      # Running statistics far from the batch's, so that r and d are clipped.
      'batch_stats': {'mean': rng.normal(0.0, 3.0, channels).astype(np.float32),
                      'var': np.geomspace(0.01, 300.0, channels).astype(np.float32),
                      'steps': np.int32(steps)},
  }


@pytest.mark.parametrize('steps,ramp', [(0, 0.0), (50, 0.5), (100, 1.0), (1000, 1.0)])
def test_training_mode_matches_numpy(steps, ramp):
  rng = np.random.default_rng(0)
  x = rng.normal(1.5, 2.0, (4, 5, 6, 8)).astype(np.float32)
  variables = make_variables(rng, 8, steps)
  module = BatchRenorm(use_running_average=False, r_max=3.0, d_max=5.0, warmup_steps=100,
                       momentum=0.9)
  y, updates = module.apply(variables, jnp.asarray(x), mutable=['batch_stats'])
  r_max, d_max = 1 + 2.0 * ramp, 5.0 * ramp
  bs = variables['batch_stats']
  ref_y, ref_mean, ref_var, r, d = reference_train(
      x.astype(np.float64), bs['mean'], bs['var'], variables['params']['scale'],
      variables['params']['bias'], r_max, d_max, 0.9)
  np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(updates['batch_stats']['mean']), ref_mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(updates['batch_stats']['var']), ref_var, rtol=1e-5, atol=1e-5)
  assert int(updates['batch_stats']['steps']) == steps + 1
  if steps >= 100:  # the clipping bites: some r at the bound, not all at 1
    assert np.any(np.isclose(r, 3.0) | np.isclose(r, 1 / 3.0)) and not np.allclose(r, 1.0)
  if steps == 0:  # warm-up start: plain batch norm
    assert np.allclose(r, 1.0) and np.allclose(d, 0.0)


def test_inference_mode_matches_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 4, 4, 6)).astype(np.float32)
  variables = make_variables(rng, 6, 10)
  y = BatchRenorm(use_running_average=True).apply(variables, jnp.asarray(x))
  bs, p = variables['batch_stats'], variables['params']
  ref = (x - bs['mean']) / np.sqrt(bs['var'] + EPS) * p['scale'] + p['bias']
  np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)


def test_no_gradient_through_r_and_d():
  """The gradient equals that of the formula with r and d held constant."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(2.0, 3.0, (2, 3, 3, 4)).astype(np.float32))
  variables = make_variables(rng, 4, 1000)
  w = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))
  module = BatchRenorm(use_running_average=False, warmup_steps=1)

  def loss(x):
    y, _ = module.apply(variables, x, mutable=['batch_stats'])
    return jnp.sum(y * w)

  bs, p = variables['batch_stats'], variables['params']
  _, _, _, r, d = reference_train(np.asarray(x, np.float64), bs['mean'], bs['var'], p['scale'],
                                  p['bias'], 3.0, 5.0, 0.99)

  def loss_constant_rd(x):
    mean = x.mean(axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x), axis=(0, 1, 2)) - jnp.square(mean)
    y = ((x - mean) / jnp.sqrt(var + EPS) * r + d) * p['scale'] + p['bias']
    return jnp.sum(y * w)

  np.testing.assert_allclose(np.asarray(jax.grad(loss)(x)), np.asarray(jax.grad(loss_constant_rd)(x)),
                             rtol=1e-4, atol=1e-5)


def test_axis_name_averages_statistics_over_devices():
  """Under vmap with an axis name, the statistics are those of the whole global batch."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 3, 4, 4, 5)).astype(np.float32)  # 2 shards of 3 images
  variables = make_variables(rng, 5, 0)
  module = BatchRenorm(use_running_average=False, axis_name='batch')
  y, _ = jax.vmap(lambda xs: module.apply(variables, xs, mutable=['batch_stats']),
                  axis_name='batch')(jnp.asarray(x))
  y_global, _ = BatchRenorm(use_running_average=False).apply(
      variables, jnp.asarray(x.reshape(6, 4, 4, 5)), mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(y).reshape(6, 4, 4, 5), np.asarray(y_global), rtol=1e-5, atol=1e-5)
