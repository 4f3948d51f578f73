"""The CPU wing: oneDNN's convolutions and our kernels equal XLA's, forward and gradients; its layers equal flax's."""

import importlib.metadata
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax.cpu import ffi as cpu_conv
from frem_jax.cpu import layers as cpu_layers
from frem_jax.cpu.layers import Conv
from frem_jax.cpu.layers import ConvTranspose
from frem_jax.cpu.layers import max_pool

import flax.linen as nn


def test_kernels_are_built_in_this_install():
  # setup.py builds them as optional; a silent build failure must not pass CI.
  assert cpu_conv.available()


def _onednn_wheel_installed():
  try:
    importlib.metadata.distribution('onednn-cpu-gomp')
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


ONEDNN_MISSING = ("oneDNN's wheels (onednn-cpu-gomp, onednn-devel-cpu-gomp) exist for Linux x86_64 only; "
                  "frem_jax's dependency and build requirement install them there, and "
                  'test_onednn_is_built_where_its_wheel_is fails if they are installed but oneDNN is not built')
needs_onednn = pytest.mark.skipif(not cpu_conv.onednn_available(), reason=ONEDNN_MISSING)
needs_onednn_bfloat16 = pytest.mark.skipif(
    not cpu_conv.onednn_bfloat16_available(),
    reason='oneDNN computes bfloat16 only on CPUs with AVX-512 or AVX2-VNNI-2 (and is needed)')


def _cpu_flags() -> set:
  with open('/proc/cpuinfo') as f:
    return next((set(line.split(':', 1)[1].split()) for line in f if line.startswith('flags')), set())


@pytest.mark.skipif(not _onednn_wheel_installed(), reason=ONEDNN_MISSING)
def test_onednn_is_built_where_its_wheel_is():
  assert cpu_conv.onednn_available()
  assert cpu_conv.onednn_info().startswith('oneDNN 3.')
  # bfloat16 where the CPU has AVX-512 (avx512_core: F, BW, VL, DQ); never asked for elsewhere.
  avx512_core = {'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'} <= _cpu_flags()
  if avx512_core:
    assert cpu_conv.onednn_bfloat16_available()
  if not cpu_conv.onednn_bfloat16_available():
    assert cpu_conv.conv3x3_plan(32, 32, jnp.bfloat16) is None
    assert cpu_conv.conv3x3_plan(32, 32, jnp.float32, 'onednn_bf16') is None


# (N, H, W, C_in, C_out): every register-block width of the weight gradient (16, 32, 64
# channels), input channels that are not a multiple of the channel block (and C_in=1, the first
# layer), and both weight-gradient strategies (many pixels, few channels: row chunks; few pixels,
# many channels: per-block tasks); the last: row chunks of 64 channels, full input-channel blocks
# and a remainder, several chunks that cross an image's end.
SHAPES = [
    (2, 9, 13, 1, 16),
    (2, 17, 30, 32, 32),
    (1, 8, 8, 64, 64),
    (1, 5, 7, 20, 48),
    (3, 12, 27, 7, 80),
    (2, 4, 4, 128, 128),
    (1, 40, 33, 16, 16),
    (2, 40, 64, 16, 64),
]


def _relative_error(a, b):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _normal(seed, *shapes):
  # numpy's draws: each shape of jax.random.normal, run eagerly, is a program XLA compiles first.
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(shape, np.float32) for shape in shapes]


def _values_and_vjp(fn, dy, *args):
  """fn(*args) and its gradients for dy with respect to each argument, as one compiled program (as
  training runs them; eagerly, every operation of both passes compiles alone)."""
  def both(g, *a):
    y, vjp = jax.vjp(fn, *a)
    return (y,) + vjp(g)
  return jax.device_get(jax.jit(both)(dy, *args))


def _assert_same_values_and_gradients(ours, reference, seed, shape, kernel_size, upsample):
  """ours(x, kernel) equals reference(x, kernel) to 1e-5, and so do both gradients."""
  n, h, w, ci, co = shape
  x, kernel, dy = _normal(seed, (n, h, w, ci), (kernel_size, kernel_size, ci, co),
                          (n, upsample * h, upsample * w, co))
  got, want = _values_and_vjp(ours, dy, x, kernel), _values_and_vjp(reference, dy, x, kernel)
  for a, b in zip(got, want):
    assert a.shape == b.shape
    assert _relative_error(a, b) < 1e-5


def _xla_reference(a, b):
  return jax.lax.conv_general_dilated(a, b, (1, 1), 'SAME', dimension_numbers=cpu_conv.DIMENSIONS,
                                      precision=jax.lax.Precision.HIGHEST)


# Our weight gradient with XLA's forward and input gradient (where oneDNN is not installed).
OURS_DW = cpu_conv.Plan('xla', 'xla', 'kernel')


@pytest.mark.parametrize('shape', SHAPES)
def test_weight_gradient_equals_xla(shape):
  _assert_same_values_and_gradients(lambda a, b: cpu_conv.planned_conv3x3(a, b, OURS_DW),
                                    _xla_reference, 0, shape, 3, 1)


# oneDNN takes any channel counts: SHAPES and output channels that are not a multiple of 16.
ONEDNN_SHAPES = SHAPES + [(1, 6, 5, 3, 5), (2, 16, 16, 512, 24)]


@needs_onednn
@pytest.mark.parametrize('shape', ONEDNN_SHAPES)
def test_onednn_forward_and_gradients_equal_xla(shape):
  _assert_same_values_and_gradients(cpu_conv.onednn_conv3x3, _xla_reference, 0, shape, 3, 1)


@needs_onednn
@pytest.mark.parametrize('shape', [SHAPES[0], SHAPES[1], SHAPES[3]])
def test_mixed_plan_equals_xla(shape):
  # The layers' default on AMD's CPUs with AVX-512: oneDNN's forward and input gradient, our kernels' weight gradient.
  plan = cpu_conv.Plan('onednn', 'onednn', 'kernel')
  _assert_same_values_and_gradients(lambda a, b: cpu_conv.planned_conv3x3(a, b, plan),
                                    _xla_reference, 0, shape, 3, 1)


@needs_onednn_bfloat16
@pytest.mark.parametrize('shape', [(2, 9, 13, 1, 16), (2, 17, 30, 32, 32), (1, 5, 7, 20, 48)])
def test_onednn_bfloat16_is_close_to_float32(shape):
  """bfloat16 inside (8-bit mantissa), float32 sums: within 1e-2 of each result's largest entry."""
  n, h, w, ci, co = shape
  x, kernel, dy = map(jnp.asarray, _normal(11, (n, h, w, ci), (3, 3, ci, co), (n, h, w, co)))
  want_y, want_vjp = jax.vjp(_xla_reference, x, kernel)
  want = (want_y,) + want_vjp(dy)
  # float32 arrays with bfloat16 arithmetic inside, and bfloat16 arrays throughout
  for dtype in (jnp.float32, jnp.bfloat16):
    y, vjp = jax.vjp(lambda a, b: cpu_conv.onednn_conv3x3(a, b, jnp.bfloat16),
                     x.astype(dtype), kernel.astype(dtype))
    got = (y,) + vjp(dy.astype(dtype))
    for a, b in zip(got, want):
      assert a.dtype == dtype and a.shape == b.shape
      assert _relative_error(a.astype(jnp.float32), b) < 1e-2


# (N, H, W, C_in, C_out): register-block widths, pixel and channel remainders, C_in not a
# multiple of 16 (input gradient by XLA), the deepest up-convolution's 512 -> 256.
UP_SHAPES = [
    (2, 3, 5, 64, 32),
    (1, 4, 30, 16, 16),
    (2, 2, 3, 5, 48),
    (1, 8, 8, 512, 256),
    (3, 5, 13, 80, 64),
]


@pytest.mark.parametrize('shape', UP_SHAPES)
def test_upconv_forward_and_gradients_equal_conv_transpose(shape):
  transpose = nn.ConvTranspose(shape[4], (2, 2), strides=(2, 2), use_bias=False,
                               precision='highest')
  reference = lambda a, b: transpose.apply({'params': {'kernel': b}}, a)
  _assert_same_values_and_gradients(cpu_conv.upconv2x2, reference, 6, shape, 2, 2)


@needs_onednn
@pytest.mark.parametrize('shape', [UP_SHAPES[0], UP_SHAPES[2], UP_SHAPES[3]])
def test_onednn_upconv_forward_and_gradients_equal_conv_transpose(shape):
  # oneDNN takes any channel counts (UP_SHAPES[2]: 5 -> 48); float32 as the layers use it without AVX-512.
  transpose = nn.ConvTranspose(shape[4], (2, 2), strides=(2, 2), use_bias=False,
                               precision='highest')
  reference = lambda a, b: transpose.apply({'params': {'kernel': b}}, a)
  _assert_same_values_and_gradients(cpu_conv.onednn_upconv2x2,
                                    reference, 6, shape, 2, 2)


@needs_onednn_bfloat16
def test_onednn_bfloat16_upconv_is_close_to_float32_and_used_by_half_precision():
  n, h, w, ci, co = 2, 3, 5, 64, 32
  x, kernel, dy = map(jnp.asarray, _normal(13, (n, h, w, ci), (2, 2, ci, co), (n, 2 * h, 2 * w, co)))
  transpose = nn.ConvTranspose(co, (2, 2), strides=(2, 2), use_bias=False, precision='highest')
  want_y, want_vjp = jax.vjp(lambda a, b: transpose.apply({'params': {'kernel': b}}, a), x, kernel)
  y, vjp = jax.vjp(lambda a, b: cpu_conv.onednn_upconv2x2(a, b, jnp.bfloat16), x, kernel)
  for a, b in zip((y,) + vjp(dy), (want_y,) + want_vjp(dy)):
    assert a.dtype == jnp.float32 and a.shape == b.shape
    err = _relative_error(a, b)
    assert 1e-5 < err < 1e-2  # bfloat16 inside (8-bit mantissa), not float32's arithmetic
  # The half-precision layer multiplies there, in a float32 layer with flax's parameters.
  layer = cpu_layers.LAYERS_HALF['conv_transpose'](co, (2, 2), strides=(2, 2))
  params = nn.ConvTranspose(co, (2, 2), strides=(2, 2)).init(jax.random.key(0), x)
  got = layer.apply(params, x)
  assert got.dtype == jnp.float32
  want = cpu_conv.onednn_upconv2x2(x, params['params']['kernel'], jnp.bfloat16)
  assert _relative_error(got, want) == 0.0


@pytest.mark.parametrize('avx512', [True, False])  # ours where built for it, else oneDNN's where built
def test_upconv_module_matches_flax_conv_transpose(avx512, monkeypatch):
  monkeypatch.setattr(cpu_conv, 'built_for_avx512', lambda: avx512)
  x, = _normal(7, (2, 8, 8, 64))
  reference = nn.ConvTranspose(32, (2, 2), strides=(2, 2))
  params = reference.init(jax.random.key(8), x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
  for kernels in (True, False):
    ours = ConvTranspose(32, (2, 2), strides=(2, 2), kernels=kernels)
    assert _relative_error(ours.apply(params, x), reference.apply(params, x)) < 1e-5
  # bfloat16 asked for where oneDNN does not compute it: the layer's float32 plan.
  monkeypatch.setattr(cpu_conv, 'onednn_bfloat16_available', lambda: False)
  half = ConvTranspose(32, (2, 2), strides=(2, 2), conv_dtype=jnp.bfloat16)
  assert _relative_error(half.apply(params, x), reference.apply(params, x)) < 1e-5


@needs_onednn
def test_onednn_results_repeat_and_use_xla_pools_threads():
  x, dy = _normal(12, (4, 64, 64, 32), (4, 64, 64, 32))
  grad = jax.jit(lambda a, g: jax.vjp(cpu_conv.onednn_conv3x3, a, jnp.ones((3, 3, 32, 32)))[1](g))
  first = jax.device_get(grad(x, dy))
  for _ in range(3):
    for a, b in zip(first, jax.device_get(grad(x, dy))):
      np.testing.assert_array_equal(a, b)
  # Its OpenMP team is XLA's intra-op pool's size (one thread per core), never more.
  assert 1 <= cpu_conv.onednn_threads() <= len(os.sched_getaffinity(0))


def test_results_do_not_depend_on_thread_timing():
  x, dy, dy_up = _normal(1, (4, 64, 64, 32), (4, 64, 64, 32), (4, 128, 128, 32))

  def grads(a, g, g_up):
    conv = jax.vjp(lambda b, k: cpu_conv.planned_conv3x3(b, k, OURS_DW), a, jnp.ones((3, 3, 32, 32)))[1](g)
    up = jax.vjp(cpu_conv.upconv2x2, a, jnp.ones((2, 2, 32, 32)))[1](g_up)
    return conv + up

  grad = jax.jit(grads)
  first = jax.device_get(grad(x, dy, dy_up))
  for _ in range(3):
    again = jax.device_get(grad(x, dy, dy_up))
    for a, b in zip(first, again):
      np.testing.assert_array_equal(a, b)


def test_layer_choice(monkeypatch):
  assert cpu_conv.uses_kernel(32, jnp.float32)  # the CPU backend, kernels built
  assert not cpu_conv.uses_kernel(8, jnp.float32)  # not a multiple of 16
  assert not cpu_conv.uses_kernel(32, jnp.bfloat16)
  plan = cpu_conv.conv3x3_plan
  onednn_or_xla = 'onednn' if cpu_conv.onednn_available() else 'xla'
  # 'kernel': our weight gradient (any input channels), the other parts oneDNN's where installed.
  assert plan(32, 32, jnp.float32, 'kernel') == plan(1, 32, jnp.float32, 'kernel') == (
      cpu_conv.Plan(onednn_or_xla, onednn_or_xla, 'kernel'))
  assert plan(32, 8, jnp.float32, 'kernel') == (
      None if onednn_or_xla == 'xla' else cpu_conv.Plan('onednn', 'onednn', 'onednn'))
  assert plan(32, 32, jnp.float32, 'xla') is None
  assert plan(32, 32, jnp.float16) is None
  with pytest.raises(ValueError, match="conv3x3 implementation 'fast'"):
    plan(32, 32, jnp.float32, 'fast')
  if cpu_conv.onednn_available():
    # Our weight gradient where it was measured faster than oneDNN's (AMD with AVX-512), oneDNN's elsewhere.
    monkeypatch.setattr(cpu_conv, 'built_for_avx512', lambda: True)
    monkeypatch.setattr(cpu_conv, 'cpu_vendor', lambda: 'AuthenticAMD')
    assert plan(32, 32, jnp.float32) == cpu_conv.Plan('onednn', 'onednn', 'kernel')
    assert cpu_conv.upconv2x2_plan(32, jnp.float32) == 'kernel'
    monkeypatch.setattr(cpu_conv, 'cpu_vendor', lambda: 'GenuineIntel')
    assert plan(32, 32, jnp.float32) == cpu_conv.Plan('onednn', 'onednn', 'onednn')
    assert plan(32, 32, jnp.float32, 'kernel') == cpu_conv.Plan('onednn', 'onednn', 'kernel')
    assert plan(3, 8, jnp.float32) == cpu_conv.Plan('onednn', 'onednn', 'onednn')
    # Kernels built without AVX-512 (an AVX2 CPU: 11-21x slower than oneDNN): oneDNN's throughout,
    # unless asked for ours by name.
    monkeypatch.setattr(cpu_conv, 'built_for_avx512', lambda: False)
    for vendor in ('AuthenticAMD', 'GenuineIntel'):
      monkeypatch.setattr(cpu_conv, 'cpu_vendor', lambda vendor=vendor: vendor)
      assert plan(32, 32, jnp.float32) == cpu_conv.Plan('onednn', 'onednn', 'onednn')
      assert cpu_conv.upconv2x2_plan(32, jnp.float32) == cpu_conv.upconv2x2_plan(8, jnp.float32) == 'onednn'
    assert plan(32, 32, jnp.float32, 'kernel') == cpu_conv.Plan('onednn', 'onednn', 'kernel')
    monkeypatch.undo()
  assert cpu_conv.upconv2x2_plan(32, jnp.float16) is None
  if not cpu_conv.onednn_available():
    assert cpu_conv.upconv2x2_plan(32, jnp.float32) == 'kernel'
    assert cpu_conv.upconv2x2_plan(8, jnp.float32) is None  # not a multiple of 16: the matrix product
  if cpu_conv.onednn_bfloat16_available():
    assert plan(32, 32, jnp.float32, 'onednn_bf16').dtype == 'bfloat16'
    # half_precision: all on oneDNN in bfloat16; asked for our weight gradient (float32 only), XLA's.
    assert plan(1, 32, jnp.bfloat16) == plan(32, 8, jnp.bfloat16) == plan(32, 32, jnp.bfloat16, 'onednn') == (
        cpu_conv.Plan('onednn', 'onednn', 'onednn', 'bfloat16'))
    assert plan(32, 32, jnp.bfloat16, 'kernel') is None
  # Without oneDNN (off Linux x86_64): XLA's forward and input gradient, with our weight gradient
  # where it was built for AVX-512 on any vendor's CPU; built for AVX2 it spills and XLA's is left
  # (train step 2.87 s against 16.41 s with our kernels on a Zen 3), unless ours is asked for by
  # name. The transposed convolution stays ours either way (524 ms against XLA's 631 there).
  monkeypatch.setattr(cpu_conv, 'onednn_available', lambda: False)
  monkeypatch.setattr(cpu_conv, 'onednn_bfloat16_available', lambda: False)
  monkeypatch.setattr(cpu_conv, 'built_for_avx512', lambda: True)
  for vendor in ('AuthenticAMD', 'GenuineIntel'):
    monkeypatch.setattr(cpu_conv, 'cpu_vendor', lambda vendor=vendor: vendor)
    assert plan(32, 32, jnp.float32) == plan(3, 32, jnp.float32) == cpu_conv.Plan('xla', 'xla', 'kernel')
  assert plan(32, 8, jnp.float32) is None  # not a multiple of 16: XLA's alone
  assert plan(32, 32, jnp.bfloat16) is None  # our kernel is float32 only
  assert cpu_conv.upconv2x2_plan(32, jnp.float32) == 'kernel'
  monkeypatch.setattr(cpu_conv, 'built_for_avx512', lambda: False)
  assert plan(32, 32, jnp.float32) is None and plan(3, 8, jnp.float32) is None
  assert plan(32, 32, jnp.float32, 'kernel') == cpu_conv.Plan('xla', 'xla', 'kernel')
  assert cpu_conv.upconv2x2_plan(32, jnp.float32) == 'kernel'
  monkeypatch.undo()
  with pytest.raises(ValueError, match=r'ConvTranspose computes 2x2 kernels of stride 2, got '
                                       r'kernel_size=\(3, 3\)'):
    ConvTranspose(8, (3, 3), strides=(2, 2)).init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


@pytest.mark.skipif(not cpu_conv.available() or 'FREM_JAX_CPU_FLAGS' in os.environ,
                    reason='needs the kernels built with -march=native (the default)')
def test_kernels_say_whether_they_were_built_for_avx512():
  assert cpu_conv.built_for_avx512() == ('avx512f' in _cpu_flags())


def test_cpu_vendor_is_read_from_proc_cpuinfo(monkeypatch):
  real_open = open
  def fake_open(text):
    return lambda path, *a, **k: io.StringIO(text) if path == '/proc/cpuinfo' else real_open(path, *a, **k)
  try:
    for text, vendor in (('processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t: avx2\n', 'GenuineIntel'),
                         ('vendor_id : AuthenticAMD\n', 'AuthenticAMD'), ('processor\t: 0\n', '')):
      monkeypatch.setattr('builtins.open', fake_open(text))
      cpu_conv.cpu_vendor.cache_clear()
      assert cpu_conv.cpu_vendor() == vendor
  finally:
    monkeypatch.undo()
    cpu_conv.cpu_vendor.cache_clear()


def test_conv3x3_module_matches_flax_conv():
  x, = _normal(2, (2, 16, 16, 3))
  reference = nn.Conv(32, (3, 3), padding='SAME', use_bias=False)
  params = reference.init(jax.random.key(3), x)
  for kernels in (True, False):
    ours = Conv(32, (3, 3), use_bias=False, kernels=kernels)
    ours_params = ours.init(jax.random.key(3), x)
    # Same parameter tree and initial values (checkpoints of either load in the other).
    np.testing.assert_array_equal(ours_params['params']['kernel'], params['params']['kernel'])
    assert _relative_error(ours.apply(params, x), reference.apply(params, x)) < 1e-5


@pytest.mark.parametrize('implementation', cpu_conv.IMPLEMENTATIONS)
def test_conv3x3_module_and_its_gradients_match_flax_conv(implementation):
  # Both gradients (parameters with a bias, and the input) of every implementation; bfloat16 to 1e-2.
  x, = _normal(13, (2, 12, 10, 32))
  reference = nn.Conv(48, (3, 3), padding='SAME', precision='highest')
  params = jax.tree.map(lambda p: p + 0.1, reference.init(jax.random.key(14), x))
  ours = Conv(48, (3, 3), implementation=implementation)
  loss = lambda module: lambda p, a: jnp.sum(jnp.sin(module.apply(p, a)))
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  tolerance = 1e-2 if implementation == 'onednn_bf16' else 1e-5
  assert _relative_error(ours.apply(params, x), reference.apply(params, x)) < tolerance
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype
    assert _relative_error(a, b) < tolerance


@pytest.mark.parametrize('implementation', ['auto', 'onednn', 'xla'])
def test_bfloat16_conv3x3_module_and_its_gradients_match_flax_conv(implementation):
  # half_precision's layers (dtype bfloat16, float32 parameters): every plan's values and both
  # gradients against flax's bfloat16 layer, to bfloat16's 1e-2.
  x, weights = _normal(15, (2, 12, 10, 32), (2, 12, 10, 48))
  reference = nn.Conv(48, (3, 3), padding='SAME', dtype=jnp.bfloat16)
  params = jax.tree.map(lambda p: p + 0.1, reference.init(jax.random.key(16), x))
  ours = Conv(48, (3, 3), dtype=jnp.bfloat16, implementation=implementation)
  # A linear loss: the gradients then test the backward convolutions, not sin() of rounded outputs.
  loss = lambda module: lambda p, a: jnp.sum(module.apply(p, a).astype(jnp.float32) * weights)
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  y = ours.apply(params, x)
  assert y.dtype == jnp.bfloat16
  assert _relative_error(y.astype(jnp.float32), reference.apply(params, x).astype(jnp.float32)) < 1e-2
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype == jnp.float32
    assert _relative_error(a, b) < 1e-2


def test_conv1x1_matches_flax_conv_and_its_gradient():
  x, = _normal(9, (2, 8, 8, 32))
  reference = nn.Conv(3, (1, 1))
  params = jax.tree.map(lambda p: p + 0.1, reference.init(jax.random.key(10), x))
  ours = Conv(3, (1, 1))
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(10), x)) == jax.tree.map(jnp.shape, params)
  loss = lambda module: lambda p, a: jnp.sum(jnp.sin(module.apply(p, a)))
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  want = jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(params, x)
  assert _relative_error(ours.apply(params, x), reference.apply(params, x)) < 1e-5
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert _relative_error(a, b) < 1e-5


def test_max_pool_matches_flax_max_pool_and_its_gradient():
  x, g = _normal(4, (2, 8, 12, 5), (2, 4, 6, 5))
  y, dx = _values_and_vjp(lambda a: max_pool(a, (2, 2), strides=(2, 2)), g, x)
  y_ref, dx_ref = _values_and_vjp(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2)), g, x)
  np.testing.assert_array_equal(y, y_ref)
  np.testing.assert_array_equal(dx, dx_ref)
