"""FREM: B channels times X in training, the identity otherwise, runtime B and X."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax.model.frem import FREM, enhancement_scale


def features(channels=16):
  return jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, channels)).astype(np.float32))


def test_deterministic_is_exactly_the_identity():
  x = features()
  y = FREM(deterministic=True).apply({}, x, 5, 100.0)
  assert y is x or np.array_equal(np.asarray(y), np.asarray(x))


@pytest.mark.parametrize('b', [0, 1, 7, 16])
def test_exactly_b_channels_are_multiplied_by_x(b):
  x = features()
  y = FREM(deterministic=False).apply({}, x, b, 632.0, rngs={'frem': jax.random.key(3)})
  ratio = np.asarray(y / x)
  per_channel = ratio.reshape(-1, 16)
  assert np.allclose(per_channel, per_channel[0])  # same channels for every pixel and image
  enhanced = np.isclose(per_channel[0], 632.0)
  assert enhanced.sum() == b
  assert np.allclose(per_channel[0][~enhanced], 1.0)


def test_same_key_same_channels_other_key_other_channels():
  s1 = enhancement_scale(jax.random.key(1), 64, 8, 2.0)
  s1_again = enhancement_scale(jax.random.key(1), 64, 8, 2.0)
  s2 = enhancement_scale(jax.random.key(2), 64, 8, 2.0)
  assert np.array_equal(np.asarray(s1), np.asarray(s1_again))
  assert not np.array_equal(np.asarray(s1), np.asarray(s2))


def test_explicit_rng_overrides_the_collection():
  x = features()
  a = FREM(deterministic=False).apply({}, x, 4, 3.0, rng=jax.random.key(7))
  b = FREM(deterministic=False).apply({}, x, 4, 3.0, rngs={'frem': jax.random.key(99)},
                                      rng=jax.random.key(7))
  assert np.array_equal(np.asarray(a), np.asarray(b))


def test_missing_rng_fails_like_dropout():
  with pytest.raises(flax.errors.InvalidRngError, match='frem'):
    FREM(deterministic=False).apply({}, features(), 4, 3.0)


def test_selection_is_uniform_over_channels():
  keys = jax.random.split(jax.random.key(0), 2000)
  scales = jax.vmap(lambda k: enhancement_scale(k, 32, 8, 10.0))(keys)
  freq = np.asarray(scales == 10.0).mean(axis=0)
  np.testing.assert_allclose(freq, 8 / 32, atol=0.04)
  assert np.all(np.asarray(scales == 10.0).sum(axis=1) == 8)


def test_b_and_x_are_runtime_values_no_recompilation():
  module = FREM(deterministic=False)
  f = jax.jit(lambda x, b, s, k: module.apply({}, x, b, s, rng=k))
  x = features()
  outs = [f(x, jnp.int32(b), jnp.float32(s), jax.random.key(0)) for b, s in [(1, 2.0), (9, 632.0), (16, 5.0)]]
  assert f._cache_size() == 1
  assert np.isclose(np.asarray(outs[1] / x).reshape(-1, 16)[0], 632.0).sum() == 9
