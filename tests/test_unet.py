"""UNetSE: size of the paper's model, shapes, SuperVision head, same inference cost with and without FREM."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax import build
from frem_jax import randomness
from frem_jax import steps
from frem_jax.model import frem
from frem_jax.model.unet import Enhancement, UNetSE, frem_channels
from tests.tiny import FEATURES, tiny_config



def count(tree):
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def shapes(model, size=256):
  return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)},
                                           jnp.zeros((1, size, size, 1)), train=False))


def test_default_model_parameter_count_is_pinned():
  """32-64-128-256-512, SE r=16, 3 classes: the same count as the PyTorch peer (7,818,623)."""
  variables = shapes(UNetSE(num_classes=3))
  assert count(variables['params']) == 7_818_623
  assert variables['params']['deepest']['conv1']['kernel'].shape == (3, 3, 512, 512)


def test_supervision_head_is_the_only_extra_parameters():
  base = shapes(UNetSE(num_classes=4))['params']
  sup = shapes(UNetSE(num_classes=4, supervision=True))['params']
  assert set(sup) - set(base) == {'supervision_head'}
  assert count(sup) - count(base) == 512 * 4 + 4


@pytest.mark.parametrize('norm', ['batch_renorm', 'batch_norm'])
def test_output_shapes(norm):
  model = UNetSE(num_classes=3, features=FEATURES, norm=norm, supervision=True)
  x = jnp.ones((2, 32, 32, 1))
  variables = shapes(model, 32)
  out, _ = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']), variables)
  assert out.logits.shape == (2, 32, 32, 3)
  assert out.supervision_logits.shape == (2, 32, 32, 3)
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert out.supervision_logits is None


def test_frem_enhances_b_channels_of_the_deepest_stage():
  model = UNetSE(num_classes=3, features=FEATURES)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32))
  state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), (16, 16, 1), 1e-3)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}

  @jax.jit
  def run(b, x_factor, key, channels=None):
    enh = Enhancement(b, x_factor, channels)
    out, inter = model.apply(variables, x, train=True, enhancement=enh, rngs={'frem': key},
                             mutable=['batch_stats', 'intermediates'])
    return out.logits, inter['intermediates']

  def enhanced_channels(inter):
    deepest = np.asarray(inter['deepest_features'][0])
    with np.errstate(invalid='ignore', divide='ignore'):
      ratio = np.asarray(inter['enhanced_features'][0]).reshape(-1, 16) / deepest.reshape(-1, 16)
    column = np.nanmax(np.where(deepest.reshape(-1, 16) != 0, ratio, np.nan), axis=0)
    assert np.all(np.isclose(column, 50.0) | np.isclose(column, 1.0))
    return np.isclose(column, 50.0)

  key = randomness.frem_epoch_key(0, 1, 'random')
  plain, _ = run(jnp.int32(0), jnp.float32(50.0), key)
  enhanced, inter = run(jnp.int32(5), jnp.float32(50.0), key)
  assert not np.allclose(plain, enhanced)
  assert enhanced_channels(inter).sum() == 5
  # frem_channels names them without the network (the logs and a population's step rely on it) ...
  for k in (key, randomness.frem_epoch_key(0, 2, 'random')):
    for b in (5, 11):
      mask = np.asarray(frem_channels(k, 16, b))
      np.testing.assert_array_equal(enhanced_channels(run(jnp.int32(b), jnp.float32(50.0), k)[1]), mask)
      # ... and channels given by the caller are those enhanced: the same step.
      given, _ = run(jnp.int32(b), jnp.float32(50.0), k, jnp.asarray(mask))
      np.testing.assert_array_equal(given, run(jnp.int32(b), jnp.float32(50.0), k)[0])
  # Not those of the key itself: flax folds FREM's place in the network into it.
  assert not np.array_equal(np.asarray(frem.selected_channels(key, 16, 5)), np.asarray(frem_channels(key, 16, 5)))


def compiled(fn, *args):
  compiled_fn = jax.jit(fn).lower(*args).compile()
  return compiled_fn.as_text(), compiled_fn.cost_analysis()['flops']


def frem_ops(hlo: str) -> set:
  """FREM's operations in an HLO text: drawing the channels (random bits, a sort for the permutation)."""
  return {op for op in ('sort(', 'rng-bit-generator(', 'rng-get-and-update-state(', 'threefry')
          if op in hlo}


def inference_programs(model, frem_at_test=False):
  """The compiled eval pass of training (validation/test) and predict's logits, for images [2, 32, 32, 1].

  With `frem_at_test`, the eval pass only.
  """
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  batch = {'image': jnp.zeros((2, 32, 32, 1)), 'mask': jnp.zeros((2, 32, 32), jnp.int32)}
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  key = randomness.frem_epoch_key(0, 0, 'random')
  eval_sums = compiled(functools.partial(steps.eval_sums_step, num_classes=3, frem_at_test=frem_at_test),
                       state, batch, hp, key)
  if frem_at_test:
    return eval_sums, None
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits = compiled(lambda v, x: model.apply(v, x, train=False).logits, variables, batch['image'])
  return eval_sums, logits


def test_a_frem_model_infers_with_the_baselines_program():
  """The FREM run's inference has no FREM operation and costs the FLOPs of a baseline built without FREM."""
  frem_model = build.build_model(tiny_config(**{'model.layers': 'flax'}), 3)  # the baseline's layers
  assert frem_model.features == FEATURES
  baseline = UNetSE(num_classes=3, features=FEATURES, renorm_warmup_steps=4)  # by hand, not from a FREM config
  frem_programs, base_programs = inference_programs(frem_model), inference_programs(baseline)
  for (frem_hlo, frem_flops), (base_hlo, base_flops) in zip(frem_programs, base_programs):
    assert frem_ops(frem_hlo) == frem_ops(base_hlo) == set()
    assert frem_flops == base_flops > 0
  # The check sees FREM where it is: FREM kept on at test (the paper's Table 1) draws channels and costs more.
  (enhanced_hlo, enhanced_flops), _ = inference_programs(frem_model, frem_at_test=True)
  assert 'sort(' in frem_ops(enhanced_hlo)
  assert enhanced_flops > base_programs[0][1]


def test_frem_costs_a_little_in_training():
  model = UNetSE(num_classes=3, features=FEATURES)
  state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), (32, 32, 1), 1e-3)
  batch = {'image': jnp.zeros((2, 32, 32, 1)), 'mask': jnp.zeros((2, 32, 32), jnp.int32)}
  hp = steps.make_hyperparams(4, 10.0, 0.0)
  flops = {}
  for frem_enabled in (True, False):
    train_fn = jax.jit(functools.partial(steps.train_step, frem_enabled=frem_enabled,
                                         supervision_enabled=False))
    flops[frem_enabled] = train_fn.lower(state, batch, hp, jax.random.key(0)).compile().cost_analysis()['flops']
  assert flops[True] > flops[False] > 0


@pytest.mark.parametrize('impl', ['rbg', 'threefry2x32'])  # the runs' keys, and jax's default
def test_initialiser_compiled_for_speed_draws_the_parameters_of_xlas_default(impl):
  """steps.CPU_INIT_COMPILER_OPTIONS (a cheaper XLA:CPU compile of the initialiser) changes no value.

  Every layer kind of the model (encoder, deepest stage, SE, renorm, up-convolution, decoder, both
  heads), the CPU wing's layers as `build` gives them, at widths small enough that XLA's default
  compile takes seconds.
  """
  model = build.build_model(tiny_config(**{'model.features': (2, 2), 'supervision.enabled': True}), 3)
  key = jax.random.key(3, impl=impl)
  default = jax.jit(lambda k: model.init({'params': k}, jnp.zeros((1, 8, 8, 1)), train=False))(key)
  ours = steps.create_train_state(model, key, (8, 8, 1), 1e-3)
  assert len(jax.tree.leaves(default['params'])) == 36
  jax.tree.map(np.testing.assert_array_equal, default,
               {'params': ours.params, 'batch_stats': ours.batch_stats})
