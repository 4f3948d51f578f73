"""Times the U-Net's 3x3 convolutions (or its transposed convolutions or max-pools), one layer at a time, on every implementation side by side.

Usage: python launch/bench_conv_layers.py [--features=16,32,64,128,512] [--image_size=256]
           [--batch=4] [--rounds=9] [--impls=xla,kernel_dw,onednn,onednn_bf16,xla_bf16] [--json=FILE]
           [--per_op] [--layer=conv3x3|upconv2x2|max_pool]

--layer=upconv2x2: the decoder's 2x2 stride-2 transposed convolutions instead, on xla
(jax.lax.conv_transpose, as flax's nn.ConvTranspose), kernel (frem_jax.cpu.ffi.upconv2x2, the
project's kernels), onednn and onednn_bf16 (frem_jax.cpu.ffi.onednn_upconv2x2). --layer=max_pool:
the encoder's 2x2 max-pools on xla (frem_jax.cpu.layers.max_pool, the wing's) and flax
(nn.max_pool).

Per layer shape of the model (every 3x3 conv: encoder, deepest stage and decoder, counted
as often as the model has it), the forward pass and the forward + backward pass (input
and kernel gradients; the first layer's input gradient is not computed, as in training)
of:
  xla          jax.lax.conv_general_dilated, float32
  kernel_dw    XLA's forward and input gradient with the project's hand-written weight gradient
               (what an install without oneDNN runs with AVX-512; the hand-written forward kernel,
               `kernel` in results before 2026-12-08, was removed: oneDNN's was faster on every CPU measured)
  onednn       frem_jax.cpu.ffi.onednn_conv3x3, float32
  auto         the layers' default plan: oneDNN's forward and input gradient, our weight gradient
               on AMD's CPUs where our kernels were built for AVX-512 (elsewhere oneDNN's: the
               same as onednn)
  onednn_bf16  oneDNN in bfloat16: bf16 activations in and out, float32 kernel cast
               inside, kernel gradient summed in float32
  xla_bf16     XLA's convolution of bf16 activations and a bf16 kernel
The candidates are timed interleaved (one call of each per round, `--rounds` rounds, after
two warm-up rounds) and the medians printed, so that a shared machine's slow spells fall on
all of them alike. Prints a table and writes JSON.
"""

import argparse
import json
import os
import statistics
import sys
import time

from frem_jax.cpu import malloc

malloc.tune_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from frem_jax.cpu import ffi  # noqa: E402
from unet_shapes import model_convs, model_pools, model_upconvs  # noqa: E402  (launch/, the script's folder)


# Per --layer: its shapes, its kernel's size (0: none) and its implementations {name: (dtype, fn(x, k))}.
def layer_spec(layer):
  if layer == 'conv3x3':
    return model_convs, 3, implementations()
  if layer == 'upconv2x2':
    xla = lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), 'SAME', dimension_numbers=ffi.DIMENSIONS)
    return model_upconvs, 2, {
        'xla': (jnp.float32, xla),
        'kernel': (jnp.float32, ffi.upconv2x2),
        'onednn': (jnp.float32, lambda x, k: ffi.onednn_upconv2x2(x, k, jnp.float32)),
        'onednn_bf16': (jnp.bfloat16, lambda x, k: ffi.onednn_upconv2x2(x, k, jnp.bfloat16)),
        'xla_bf16': (jnp.bfloat16, lambda x, k: xla(x, k.astype(jnp.bfloat16))),
    }
  # Imported here: the convolution benchmarks need neither.
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from frem_jax.cpu import layers  # pylint: disable=g-import-not-at-top
  return model_pools, 0, {
      'xla': (jnp.float32, lambda x, k: layers.max_pool(x, (2, 2), (2, 2))),
      'flax': (jnp.float32, lambda x, k: nn.max_pool(x, (2, 2), (2, 2))),
      'xla_bf16': (jnp.bfloat16, lambda x, k: layers.max_pool(x, (2, 2), (2, 2))),
  }


def implementations():
  xla = ffi.xla_conv
  impls = {
      'xla': (jnp.float32, xla),
      'kernel_dw': (jnp.float32, lambda x, k: ffi.planned_conv3x3(x, k, ffi.Plan('xla', 'xla', 'kernel'))),
      'onednn': (jnp.float32, ffi.onednn_conv3x3),
      'auto': (jnp.float32, lambda x, k: ffi.planned_conv3x3(
          x, k, ffi.conv3x3_plan(x.shape[3], k.shape[3], x.dtype))),
      'onednn_bf16': (jnp.bfloat16, lambda x, k: ffi.onednn_conv3x3(x, k, jnp.bfloat16)),
      'xla_bf16': (jnp.bfloat16, lambda x, k: xla(x, k.astype(jnp.bfloat16))),
  }
  return impls


def build(fn, dtype, shape, input_grad, size=3):
  n, res, ci, co = shape
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (n, res, res, ci), jnp.float32).astype(dtype)
  k = jax.random.normal(kk, (max(size, 1), max(size, 1), ci, co), jnp.float32) * 0.1
  out_res = {3: res, 2: 2 * res, 0: res // 2}[size]
  dy = jax.random.normal(kg, (n, out_res, out_res, co), jnp.float32).astype(dtype)
  forward = jax.jit(fn)
  if input_grad:
    both = jax.jit(lambda x, k, dy: jax.vjp(fn, x, k)[1](dy))
  else:
    both = jax.jit(lambda x, k, dy: jax.vjp(lambda k: fn(x, k), k)[1](dy))
  return (lambda: forward(x, k)), (lambda: both(x, k, dy))


def build_ops(shape):
  """{'fwd'|'dx'|'dw': {impl: thunk}}: XLA's (forward, input gradient) or our kernel (weight gradient) and oneDNN's, float32, each op alone."""
  n, res, ci, co = shape
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (n, res, res, ci), jnp.float32)
  k = jax.random.normal(kk, (3, 3, ci, co), jnp.float32) * 0.1
  dy = jax.random.normal(kg, (n, res, res, co), jnp.float32)
  flip = lambda k: jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2)
  f32 = jnp.float32
  ops = {
      'fwd': {'xla': (ffi.xla_conv, x, k),
              'onednn': (lambda x, k: ffi._dnnl_call(ffi._DNNL_FORWARD, x.shape[:3] + (co,), f32, x, k), x, k)},
      'dx': {'xla': (lambda dy, k: ffi.xla_conv(dy, flip(k)), dy, k),
             'onednn': (lambda dy, k: ffi._dnnl_call(ffi._DNNL_INPUT_GRAD, x.shape, f32, dy, k), dy, k)},
      'dw': {'kernel': (ffi._weight_grad, x, dy),
             'onednn': (lambda x, dy: ffi._dnnl_call(ffi._DNNL_WEIGHT_GRAD, k.shape, f32, x, dy), x, dy)},
  }
  out = {}
  for op, impls in ops.items():
    out[op] = {}
    for name, (fn, a, b) in impls.items():
      jitted = jax.jit(fn)
      out[op][name] = (lambda jitted=jitted, a=a, b=b: jitted(a, b))
  return out


def per_op(args, features):
  """Times fwd, dx and dw alone, XLA's or our kernel against oneDNN, interleaved; prints a table."""
  print('| layer | count | fwd xla | fwd onednn | dx xla | dx onednn | dw kernel | dw onednn |')
  print('|---' * 8 + '|')
  total = {}
  for res, ci, co, count in model_convs(features, args.image_size):
    ops = build_ops((args.batch, res, ci, co))
    cells = []
    for op, impls in ops.items():
      times = {name: [] for name in impls}
      for r in range(args.rounds + 2):
        for name, f in impls.items():
          t = timed(f)
          if r >= 2:
            times[name].append(t)
      for name, ts in times.items():
        m = statistics.median(ts) * 1e3
        total[(op, name)] = total.get((op, name), 0.0) + count * m
        cells.append(f'{m:.1f}')
    print(f'| {res}²x{ci}->{co} | {count} | ' + ' | '.join(cells) + ' |', flush=True)
  print('| all (sum x count) | | ' + ' | '.join(f'{v:.0f}' for v in total.values()) + ' |')


def timed(f):
  t0 = time.perf_counter()
  jax.block_until_ready(f())
  return time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--features', default='16,32,64,128,512')
  p.add_argument('--image_size', type=int, default=256)
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--rounds', type=int, default=9)
  p.add_argument('--impls', default='',
                 help='comma-separated; default: xla,kernel_dw,onednn,onednn_bf16,xla_bf16 for conv3x3, all for the others')
  p.add_argument('--json', default='')
  p.add_argument('--layer', default='conv3x3', choices=('conv3x3', 'upconv2x2', 'max_pool'))
  p.add_argument('--per_op', action='store_true',
                 help="instead: forward, input gradient and kernel gradient alone, XLA's or our kernel vs oneDNN (float32)")
  args = p.parse_args()
  features = [int(f) for f in args.features.split(',')]
  shapes_of, size, impls = layer_spec(args.layer)
  default = 'xla,kernel_dw,onednn,onednn_bf16,xla_bf16' if args.layer == 'conv3x3' else ','.join(impls)
  names = (args.impls or default).split(',')
  unknown = [n for n in names if n not in impls]
  if unknown:
    sys.exit(f'error: --impls={args.impls}: {", ".join(unknown)} not one of {", ".join(impls)} '
             f'(--layer={args.layer})')
  if args.per_op and args.layer != 'conv3x3':
    sys.exit(f'error: --per_op times the 3x3 convolutions only; drop --layer={args.layer} or --per_op')
  if args.layer != 'max_pool' and not ffi.onednn_available():
    sys.exit('error: oneDNN is not built in this install')
  print(f'# {ffi.onednn_info()}; jax {jax.__version__}; CPU: {cpu_name()}; '
        f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY")}', flush=True)
  if args.per_op:
    return per_op(args, features)
  results = []
  for res, ci, co, count in shapes_of(features, args.image_size):
    shape = (args.batch, res, ci, co)
    fns = {name: build(impls[name][1], impls[name][0], shape, ci > 1, size) for name in names}
    row = {'res': res, 'c_in': ci, 'c_out': co, 'count': count}
    for mode, index in (('fwd', 0), ('fwd_bwd', 1)):
      times = {name: [] for name in names}
      for r in range(args.rounds + 2):
        for name in names:
          t = timed(fns[name][index])
          if r >= 2:
            times[name].append(t)
      row[mode] = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
      row[mode + '_min'] = {name: min(ts) * 1e3 for name, ts in times.items()}
    results.append(row)
    print(f'{res}²x{ci}->{co} (x{count}): ' + '  '.join(
        f'{m} ' + ' '.join(f'{n}={row[m][n]:.1f}' for n in names) for m in ('fwd', 'fwd_bwd')),
          flush=True)
  print()
  print('| layer (batch %d) | count | ' % args.batch + ' | '.join(
      f'fwd {n}' for n in names) + ' | ' + ' | '.join(f'fwd+bwd {n}' for n in names) + ' |')
  print('|---' * (2 + 2 * len(names)) + '|')
  total = {m: {n: 0.0 for n in names} for m in ('fwd', 'fwd_bwd')}
  for row in results:
    for m in total:
      for n in names:
        total[m][n] += row['count'] * row[m][n]
    print(f'| {row["res"]}²x{row["c_in"]}->{row["c_out"]} | {row["count"]} | ' + ' | '.join(
        f'{row["fwd"][n]:.1f}' for n in names) + ' | ' + ' | '.join(
        f'{row["fwd_bwd"][n]:.1f}' for n in names) + ' |')
  print(f'| all {args.layer} (sum x count) | | ' + ' | '.join(
      f'{total["fwd"][n]:.0f}' for n in names) + ' | ' + ' | '.join(
      f'{total["fwd_bwd"][n]:.0f}' for n in names) + ' |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'layer': args.layer, 'features': features, 'batch': args.batch, 'rounds': args.rounds,
                 'onednn': ffi.onednn_info(), 'cpu': cpu_name(), 'layers': results, 'total_ms': total}, f)


def cpu_name():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip() + f', {os.cpu_count()} cores'
  except OSError:
    pass
  return 'unknown'


if __name__ == '__main__':
  main()
