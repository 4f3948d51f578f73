"""half_precision: bfloat16 compute, float32 parameters, optimizer state, statistics, logits and loss."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax import build
from frem_jax import datasets
from frem_jax import input_pipeline
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import statistics
from frem_jax import steps
from frem_jax.cpu import benchmark
from frem_jax.cpu import ffi as cpu_ffi
from frem_jax.cpu import layers as cpu_layers
from frem_jax.errors import UserError
from frem_jax.model.frem import FREM, selected_channels
from frem_jax.model.se_block import SEBlock
from frem_jax.model.unet import Enhancement
from frem_jax.search import space as search_space
from frem_jax.train import population
from tests.kernel_calls import kernel_calls
from tests.tiny import DATA_DIR, KERNEL_FEATURES, tiny_config

BF16 = jnp.bfloat16
# bfloat16 keeps 8 significant bits: one rounding is off by at most 2^-8 of the value.
BF16_RTOL = 2.0 ** -8
STEPS = 4


def half_config(**overrides):
  # flax's layers: half precision as GPUs and TPUs run it, bfloat16 throughout. The CPU wing's own
  # (bfloat16 convolutions on oneDNN in a float32 model): test_cpu_half_precision_*.
  return tiny_config(**{'half_precision': True, 'supervision.enabled': True, 'model.layers': 'flax', **overrides})


def rounded(values: np.ndarray) -> np.ndarray:
  """float32 values rounded to bfloat16 once, back as float32."""
  return np.asarray(jnp.asarray(values, jnp.float32).astype(BF16), np.float32)


def dtypes(tree) -> set:
  return {str(x.dtype) for x in jax.tree.leaves(tree)}


@pytest.fixture(scope='module')
def trained():
  """{precision: (initial state, final state, per-step metrics, model)}, the same batches and init."""
  config = half_config()
  data = datasets.load_dataset(config, DATA_DIR)
  batches = list(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  hp = steps.make_hyperparams(5, 20.0, 0.3)
  out = {}
  for half in (False, True):
    model = build.build_model(half_config(half_precision=half), data.num_classes)
    state0 = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
    step = jax.jit(lambda s, b: steps.train_step(s, b, hp, randomness.frem_epoch_key(0, 1, 'random'),
                                                 frem_enabled=True, supervision_enabled=True))
    state, history = state0, []
    for i in range(STEPS):
      state, m = step(state, batches[i % len(batches)])
      history.append(m)
    out['bfloat16' if half else 'float32'] = (state0, state, history, model)
  return out


def test_parameters_adam_state_and_statistics_stay_float32(trained):
  for state in trained['bfloat16'][:2]:
    assert dtypes((state.params, state.opt_state, state.batch_stats)) == {'float32', 'int32'}
  # The same parameters as float32's: the dtype changes the arithmetic, never the initialisation.
  for a, b in zip(jax.tree.leaves(trained['bfloat16'][0].params), jax.tree.leaves(trained['float32'][0].params)):
    np.testing.assert_array_equal(a, b)


def test_reestimated_statistics_of_a_bfloat16_model_are_float32_and_near_float32s(trained):
  """`eval.reestimate_statistics` with `half_precision`: the twin computes in bfloat16, sums in float32."""
  data = datasets.load_dataset(half_config(), DATA_DIR)
  order = np.arange(8).reshape(2, 4)
  mesh = parallel.make_mesh(parallel.local_devices(1))
  out = {}
  for half in (False, True):
    state = trained['float32'][1]  # one set of trained parameters, so only the arithmetic differs
    twin = build.build_model(statistics.moments_config(half_config(half_precision=half)), data.num_classes)
    out[half] = statistics.reestimate(statistics.jit_accumulate(twin, mesh), state.params, state.batch_stats,
                                      data.splits['train'].images, order)
  assert dtypes(out[True]) == dtypes(trained['float32'][1].batch_stats)
  for a, b in zip(jax.tree.leaves(out[True]), jax.tree.leaves(out[False])):
    np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)


def test_activations_are_bfloat16_the_se_gate_logits_and_loss_float32(trained):
  state, _, history, model = trained['bfloat16']
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  out, inter = jax.eval_shape(lambda: model.apply(
      variables, jnp.zeros((2, 32, 32, 1)), train=True, capture_intermediates=True,
      mutable=['intermediates', 'batch_stats']))
  deepest = inter['intermediates']['deepest']
  for name in ('conv0', 'norm0', 'conv1', 'norm1', 'se'):
    assert deepest[name]['__call__'][0].dtype == BF16, name
  assert inter['intermediates']['up0']['__call__'][0].dtype == BF16
  assert inter['intermediates']['frem']['__call__'][0].dtype == BF16
  # The SE block's squeeze and gate (N x C values) are float32.
  assert deepest['se']['squeeze']['__call__'][0].dtype == jnp.float32
  assert deepest['se']['excite']['__call__'][0].dtype == jnp.float32
  assert out.logits.dtype == jnp.float32 and out.supervision_logits.dtype == jnp.float32
  assert all(m['loss'].dtype == jnp.float32 and m['loss_final'].dtype == jnp.float32 for m in history)


def test_a_few_bfloat16_steps_track_float32(trained):
  half = np.array([float(m['loss']) for m in trained['bfloat16'][2]])
  full = np.array([float(m['loss']) for m in trained['float32'][2]])
  assert np.isfinite(half).all()
  # Measured: at most 0.01 % apart over the 4 steps (bfloat16's rounding is up to 0.4 % per value).
  np.testing.assert_allclose(half, full, rtol=0.01)
  # Adam moves each parameter by about the learning rate (1e-3) per step whatever the gradient's
  # size, so where bfloat16's rounding flips a step's sign the parameters part by ~2e-3 a step.
  # Measured after 4 steps: median 6e-5, 99th percentile 3e-3, largest 6e-3.
  apart = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(
      jax.tree.leaves(trained['bfloat16'][1].params), jax.tree.leaves(trained['float32'][1].params))])
  assert apart.max() <= STEPS * 4e-3 and np.median(apart) <= 1e-3


@pytest.mark.parametrize('factor', [1000.0, 10000.0])
def test_frem_in_bfloat16_multiplies_by_x_and_stays_finite(factor):
  x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, (2, 4, 4, 32)), BF16)
  key = jax.random.key(1)
  y = FREM(deterministic=False).apply({}, x, 7, factor, rng=key)
  assert y.dtype == BF16 and bool(jnp.isfinite(y).all())
  enhanced = np.asarray(selected_channels(key, 32, 7))
  x32, y32 = np.asarray(x, np.float32), np.asarray(y, np.float32)
  np.testing.assert_array_equal(y32[..., ~enhanced], x32[..., ~enhanced])
  # X applied in float32, the product rounded once (bfloat16's own X would be 9984 for 10000).
  np.testing.assert_array_equal(y32[..., enhanced], rounded(factor * x32[..., enhanced]))
  np.testing.assert_allclose(y32[..., enhanced], factor * x32[..., enhanced], rtol=BF16_RTOL)


def test_a_bfloat16_model_enhances_its_deepest_channels_by_10000(trained):
  state, _, _, model = trained['bfloat16']
  key = randomness.frem_epoch_key(0, 1, 'random')
  images = jax.random.normal(jax.random.key(2), (2, 32, 32, 1))
  out, inter = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images, train=False,
                           enhancement=Enhancement(jnp.int32(5), jnp.float32(10000.0)), rngs={'frem': key},
                           mutable=['intermediates'])
  before = np.asarray(inter['intermediates']['deepest_features'][0], np.float32)
  after = np.asarray(inter['intermediates']['enhanced_features'][0], np.float32)
  assert np.isfinite(after).all() and np.isfinite(np.asarray(out.logits)).all()
  # The channels FREM drew (from its own stream of `key`): B of them changed, the others are the input.
  enhanced = (after != before).any(axis=(0, 1, 2))
  assert enhanced.sum() == 5
  np.testing.assert_array_equal(after[..., enhanced], rounded(10000.0 * before[..., enhanced]))
  np.testing.assert_allclose(after[..., enhanced], 10000.0 * before[..., enhanced], rtol=BF16_RTOL)
  assert np.abs(after[..., enhanced]).max() > 1000.0  # the channels were not lost


def test_se_block_in_bfloat16_follows_float32():
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 16)) + 3.0
  block = SEBlock(4)
  variables = block.init(jax.random.key(1), x)
  full = block.apply(variables, x)
  half = block.apply(variables, x.astype(BF16))
  assert half.dtype == BF16
  np.testing.assert_allclose(np.asarray(half, np.float32), full, rtol=2 * BF16_RTOL, atol=1e-2)


@pytest.mark.parametrize('layer,features,kernel_size', [
    (cpu_layers.Conv, 16, (3, 3)), (cpu_layers.Conv, 3, (1, 1)), (cpu_layers.ConvTranspose, 16, (2, 2))])
def test_cpu_wing_layers_take_bfloat16(layer, features, kernel_size):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  kwargs = {} if layer is cpu_layers.ConvTranspose else {'kernel_size': kernel_size}
  full_layer, half_layer = layer(features, **kwargs), layer(features, dtype=BF16, **kwargs)
  variables = full_layer.init(jax.random.key(1), x)
  assert dtypes(half_layer.init(jax.random.key(1), x)) == {'float32'}
  half = half_layer.apply(variables, x)
  assert half.dtype == BF16
  full = full_layer.apply(variables, x)
  np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=4 * BF16_RTOL * float(jnp.abs(full).max()))
  grads = jax.grad(lambda v: half_layer.apply(v, x).astype(jnp.float32).sum())(variables)
  assert dtypes(grads) == {'float32'}


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the kernels are XLA:CPU custom calls')
def test_cpu_half_precision_multiplies_in_bfloat16_convolutions_in_a_float32_model():
  config = half_config(**{'model.features': KERNEL_FEATURES, 'model.layers': 'cpu', 'supervision.enabled': False})
  model = build.build_model(config, 3)
  onednn = cpu_ffi.onednn_bfloat16_available()
  assert build.cpu_half_precision(config) == onednn
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  rng = np.random.default_rng(3)  # numpy's draws: eager jax.random calls are programs to compile
  batch = {'image': rng.standard_normal((4, 32, 32, 1), np.float32), 'mask': rng.integers(0, 3, (4, 32, 32), np.int32)}
  lowered = jax.jit(lambda s, b: steps.train_step(
      s, b, steps.make_hyperparams(5, 20.0, 0.0), randomness.frem_epoch_key(0, 1, 'random'),
      frem_enabled=True, supervision_enabled=False)).lower(state, batch)
  described = benchmark.describe(model)
  if not onednn:  # flax's policy on the wing's layers, XLA's bfloat16 operations
    assert model.dtype == BF16 and kernel_calls(lowered) == set()
    assert described == {'precision': 'bfloat16', 'layers_used': 'cpu', 'cpu_kernels_used': False, 'conv3x3': 'xla'}
    return
  # The 3x3 and the transposed convolutions on oneDNN with bfloat16 operands; activations and the
  # rest float32.
  assert model.dtype == jnp.float32
  assert kernel_calls(lowered) == {'frem_dnnl_conv3x3', 'frem_dnnl_conv3x3_dx', 'frem_dnnl_conv3x3_dw',
                                   'frem_dnnl_upconv2x2', 'frem_dnnl_upconv2x2_dx', 'frem_dnnl_upconv2x2_dw'}
  text = lowered.as_text()
  assert re.search(r'custom_call @frem_dnnl_conv3x3\(%\S+, %\S+\).*tensor<4x32x32x16xbf16>', text)
  assert re.search(r'custom_call @frem_dnnl_upconv2x2\(%\S+, %\S+\).*tensor<4x16x16x32xbf16>', text)
  assert described == {'precision': 'bfloat16 convolutions', 'layers_used': 'cpu', 'cpu_kernels_used': True,
                       'conv3x3': 'onednn/onednn/onednn in bfloat16'}
  _, inter = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, batch['image'],
                         train=False, capture_intermediates=True, mutable=['intermediates'])
  assert inter['intermediates']['deepest']['conv0']['__call__'][0].dtype == jnp.float32
  # The same parameters give the float32 model's outputs to bfloat16's rounding, not exactly.
  full = build.build_model(tiny_config(**{'model.features': KERNEL_FEATURES, 'model.layers': 'cpu',
                                           'supervision.enabled': False}), 3)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  y_half = np.asarray(model.apply(variables, batch['image'], train=False).logits)
  y_full = np.asarray(full.apply(variables, batch['image'], train=False).logits)
  assert not np.array_equal(y_half, y_full)
  np.testing.assert_allclose(y_half, y_full, atol=0.05 * np.abs(y_full).max())


def test_bench_names_the_precision():
  full = build.build_model(tiny_config(**{'model.layers': 'flax'}), 3)
  half = build.build_model(tiny_config(**{'model.layers': 'flax', 'half_precision': True}), 3)
  assert benchmark.describe(full) == {'precision': 'float32', 'layers_used': 'flax', 'cpu_kernels_used': False,
                                     'conv3x3': 'xla'}
  assert benchmark.describe(half)['precision'] == 'bfloat16'


def test_a_bfloat16_population_step_keeps_float32_states(trained):
  """K members in one vmapped bfloat16 step (traced, not run: it is the single run's train_step)."""
  state0 = trained['bfloat16'][0]
  states = population.stack([state0, state0])
  hparams = population.stack([steps.make_hyperparams(5, 20.0, 0.3), steps.make_hyperparams(16, 10000.0, 0.3)])
  keys = jnp.stack([randomness.frem_epoch_key(0, 1, 'random')] * 2)
  images, masks = jnp.zeros((8, 32, 32, 1)), jnp.zeros((8, 32, 32), jnp.int32)
  states, m = jax.eval_shape(population.jit_train_step(True, True, half_config().model.features[-1]), states, images, masks,
                             jnp.arange(4), hparams, keys)
  assert m['loss'].dtype == jnp.float32 and m['loss'].shape == (2,)
  assert dtypes((states.params, states.opt_state, states.batch_stats)) == {'float32', 'int32'}


def test_population_members_share_one_precision():
  with pytest.raises(UserError, match=r'member 1 differs from member 0 in half_precision \(False -> True\)'):
    population.check_members([tiny_config(), tiny_config(half_precision=True)])


def test_a_sweeps_trials_keep_its_precision():
  trial = search_space.trial_config(tiny_config(half_precision=True), 'frem', {'num_selected': 3, 'factor': 7.0})
  assert trial.half_precision is True and trial.frem.factor == 7.0


def test_half_precision_on_a_cpu_without_bfloat16_warns_once_that_float32_is_faster(monkeypatch, caplog):
  monkeypatch.setattr(cpu_ffi, 'onednn_bfloat16_available', lambda: False)
  build._warn_half_precision_without_bfloat16.cache_clear()  # pylint: disable=protected-access
  try:
    with caplog.at_level('WARNING'):
      for _ in range(2):
        build.build_model(tiny_config(half_precision=True), 3)
      build.build_model(tiny_config(), 3)
    warned = [r.getMessage() for r in caplog.records if 'half_precision=True computes' in r.getMessage()]
    assert len(warned) == 1 and 'leave half_precision off' in warned[0], warned
    if cpu_ffi.onednn_available():
      assert "37-53 % of float32's speed" in warned[0] and 'no bfloat16 arithmetic' in warned[0]
  finally:
    build._warn_half_precision_without_bfloat16.cache_clear()  # pylint: disable=protected-access


def test_float32_on_a_cpu_without_bfloat16_says_nothing_about_half_precision(monkeypatch, caplog):
  monkeypatch.setattr(cpu_ffi, 'onednn_bfloat16_available', lambda: False)
  build._warn_half_precision_without_bfloat16.cache_clear()  # pylint: disable=protected-access
  with caplog.at_level('WARNING'):
    build.build_model(tiny_config(), 3)
  assert not [r for r in caplog.records if 'half_precision' in r.getMessage()]


def test_half_precision_without_onednn_says_to_install_it(monkeypatch, caplog):
  monkeypatch.setattr(cpu_ffi, 'onednn_bfloat16_available', lambda: False)
  monkeypatch.setattr(cpu_ffi, 'onednn_available', lambda: False)
  build._warn_half_precision_without_bfloat16.cache_clear()  # pylint: disable=protected-access
  try:
    with caplog.at_level('WARNING'):
      build.build_model(tiny_config(half_precision=True), 3)
    warned = [r.getMessage() for r in caplog.records if 'half_precision=True computes' in r.getMessage()]
    assert len(warned) == 1 and "as oneDNN is not installed" in warned[0] and 'Linux x86_64' in warned[0], warned
  finally:
    build._warn_half_precision_without_bfloat16.cache_clear()  # pylint: disable=protected-access
