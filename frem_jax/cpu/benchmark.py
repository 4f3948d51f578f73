"""Timing of the train step and the inference pass (behind `python -m frem_jax.bench`).

Warm-up steps are excluded; times are medians. FLOP counts come from XLA's
cost_analysis of the compiled steps (`gflops_per_s`) and from the
convolutions alone, as the PyTorch peer counts them (`conv_gflops_per_s`:
3 x forward conv FLOPs per training image).
"""

import functools
import os
import platform
import resource
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from frem_jax import steps
from frem_jax.cpu import ffi
from frem_jax.cpu import layers as cpu_layers


def conv_forward_flops(features, image_size, in_channels, num_classes) -> int:
  """2 x MACs of all (transposed) convolutions of one image, as the PyTorch peer counts them."""
  macs, h, cin = 0, image_size, in_channels
  for w in features[:-1]:
    macs += h * h * 9 * (cin * w + w * w)
    cin, h = w, h // 2
  macs += h * h * 9 * (cin * features[-1] + features[-1] ** 2)
  cin = features[-1]
  for w in reversed(features[:-1]):
    h *= 2
    macs += h * h * cin * w + h * h * 9 * (2 * w * w + w * w)
    cin = w
  return 2 * (macs + h * h * cin * num_classes)


def _time(fn, warmup: int, steps_: int) -> list[float]:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps_):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def _summary(batch, times, flops_per_step, conv_flops_per_step, compile_s) -> dict:
  median = statistics.median(times)
  return {'batch': batch, 'median_s': median, 'min_s': min(times), 'images_per_s': batch / median,
          'gflops_per_s': flops_per_step / median / 1e9,
          'conv_gflops_per_s': conv_flops_per_step / median / 1e9, 'compile_s': compile_s}


def _without_kernels(model: nn.Module) -> nn.Module:
  """`model` with the CPU layers' XLA forms instead of the kernels (the same as `model` otherwise)."""
  if not cpu_layers.is_cpu_conv(model.conv):
    return model
  return model.clone(conv=functools.partial(cpu_layers.Conv, kernels=False),
                     conv_transpose=functools.partial(cpu_layers.ConvTranspose, kernels=False))


def _multiply_dtype(model: nn.Module):
  """The dtype `model`'s 3x3 convolutions multiply in: its conv's `conv_dtype`, else the model's."""
  return cpu_layers.conv_dtype(model.conv) or model.dtype


def describe_conv3x3(model: nn.Module) -> str:
  """Who computes the 3x3 convolutions of `model`'s widest stage: 'forward/input_grad/weight_grad in DTYPE' ('onednn' or 'xla' each, 'kernel' for the weight gradient), or 'xla'."""
  widest = max(model.features)
  plan = (ffi.conv3x3_plan(widest, widest, _multiply_dtype(model))
          if cpu_layers.is_cpu_conv(model.conv) else None)
  return 'xla' if plan is None else f'{plan.forward}/{plan.input_grad}/{plan.weight_grad} in {plan.dtype}'


def kernels_used(model: nn.Module) -> bool:
  """Whether some convolution of `model` runs on the CPU kernels or oneDNN (bfloat16: on oneDNN only)."""
  return cpu_layers.is_cpu_conv(model.conv) and any(
      ffi.conv3x3_plan(f, f, _multiply_dtype(model)) or ffi.upconv2x2_plan(f, _multiply_dtype(model))
      for f in model.features)


def model_precision(model: nn.Module) -> str:
  """What `model` computes in, from its dtypes: 'float32', 'bfloat16' or 'DTYPE convolutions'.

  For the models build.build_model makes, one of build.PRECISIONS' keys, equal to
  build.precision(config) (the tests check both derivations agree).
  """
  multiply = jnp.dtype(_multiply_dtype(model)).name
  return f'{multiply} convolutions' if multiply != jnp.dtype(model.dtype).name else multiply


def describe(model: nn.Module) -> dict:
  """What ran: 'precision' (`model_precision`), 'layers_used' ('cpu', the wing's, or 'flax'),
  'cpu_kernels_used' and 'conv3x3' (`describe_conv3x3`)."""
  return {'precision': model_precision(model),
          'layers_used': 'cpu' if cpu_layers.is_cpu_conv(model.conv) else 'flax',
          'cpu_kernels_used': kernels_used(model),
          'conv3x3': describe_conv3x3(model)}


def run_benchmark(model: nn.Module, image_size: int, batch_sizes, infer_batch_sizes, num_steps,
                  warmup, in_channels=1, num_selected=162, factor=632.0) -> dict:
  """Times `model`'s train step (FREM on) and inference forward pass; returns the JSON-able results."""
  features, num_classes = tuple(model.features), model.num_classes
  # XLA's cost analysis does not see into the CPU kernels' custom calls: FLOPs are counted on
  # the same step with XLA's convolutions (lowered only, not compiled).
  counted = _without_kernels(model)
  shape = (image_size, image_size, in_channels)
  state0 = steps.create_train_state(model, jax.random.key(0, impl='rbg'), shape, 1e-3)
  num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(state0.params)))
  conv_fwd = conv_forward_flops(features, image_size, in_channels, num_classes)
  hp = steps.make_hyperparams(num_selected, factor, 0.0)
  key = jax.random.key(1, impl='rbg')
  rng = np.random.default_rng(0)
  train_step = jax.jit(lambda s, b, h, k: steps.train_step(
      s, b, h, k, frem_enabled=True, supervision_enabled=False), donate_argnums=0)
  infer = jax.jit(lambda s, x: s.apply_fn({'params': s.params, 'batch_stats': s.batch_stats},
                                          x, train=False).logits)
  result = {'train': [], 'infer': []}
  forward_xla_flops = None
  for batch_size in batch_sizes:
    batch = {'image': jnp.asarray(rng.normal(size=(batch_size,) + shape), jnp.float32),
             'mask': jnp.asarray(rng.integers(0, num_classes, (batch_size, image_size, image_size)),
                                 jnp.int32)}
    state = jax.tree.map(jnp.copy, state0)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, hp, key).compile()
    compile_s = time.perf_counter() - t0
    flops = train_step.lower(state.replace(apply_fn=counted.apply), batch, hp,
                             key).cost_analysis()['flops']
    holder = [state]

    def step():
      holder[0], m = compiled(holder[0], batch, hp, key)
      return m['loss']

    times = _time(step, warmup, num_steps)
    result['train'].append(_summary(batch_size, times, flops, 3 * conv_fwd * batch_size, compile_s))
  for batch_size in infer_batch_sizes:
    x = jnp.asarray(rng.normal(size=(batch_size,) + shape), jnp.float32)
    t0 = time.perf_counter()
    compiled = infer.lower(state0, x).compile()
    compile_s = time.perf_counter() - t0
    flops = infer.lower(state0.replace(apply_fn=counted.apply), x).cost_analysis()['flops']
    forward_xla_flops = flops / batch_size
    times = _time(lambda: compiled(state0, x), warmup, num_steps)
    result['infer'].append(_summary(batch_size, times, flops, conv_fwd * batch_size, compile_s))
  result.update({
      'framework': f'jax {jax.__version__}, flax {__import__("flax").__version__}',
      'python': platform.python_version(), 'device': str(jax.devices()[0]),
      'device_kind': jax.devices()[0].device_kind, 'num_devices': jax.device_count(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'features': list(features),
      'image_size': image_size, 'num_classes': num_classes, 'num_params': num_params,
      **describe(model),
      'onednn': ffi.onednn_info() if kernels_used(model) else '',
      'forward_gflop_per_image': forward_xla_flops / 1e9 if forward_xla_flops else None,
      'conv_forward_gflop_per_image': conv_fwd / 1e9,
      'warmup': warmup, 'steps': num_steps,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  })
  return result
