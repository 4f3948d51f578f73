"""Times the whole train step with each implementation of the 3x3 convolutions, interleaved, in one process.

Usage: python launch/bench_conv_step.py [--features=16,32,64,128,512] [--image_size=256]
           [--batch=4] [--rounds=11] [--impls=onednn,auto,onednn_bf16] [--without_onednn]

The model is `build_model`'s for configs/default.py with `model.features` and
`dataset.image_size` set (the CPU wing's layers), its 3x3 convolutions' `implementation`
set per candidate (frem_jax/cpu/layers.py: 'auto', 'onednn', 'kernel' (our weight
gradient, the rest as 'auto': on AMD's CPUs with AVX-512 the same as 'auto'), 'xla',
'onednn_bf16'); everything else (up-convolutions, pooling, norm) is the same. Each round
runs one train step (FREM on, as `python -m frem_jax.bench`) of every candidate in turn;
medians and minima over `--rounds` rounds after two warm-up rounds. Prints one JSON line.
`--without_onednn` plans as an install without oneDNN (off Linux x86_64) does: oneDNN is
turned off in this process, so 'auto' is XLA's convolutions with or without our weight
gradient (`ffi.conv3x3_plan`).
"""

import argparse
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frem_jax.cpu import malloc  # noqa: E402

malloc.tune_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import default  # noqa: E402
from frem_jax import steps  # noqa: E402
from frem_jax.build import build_model  # noqa: E402
from frem_jax.cpu import ffi  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--features', default='16,32,64,128,512')
  p.add_argument('--image_size', type=int, default=256)
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--rounds', type=int, default=11)
  p.add_argument('--impls', default='onednn,auto,onednn_bf16')
  p.add_argument('--half_precision', action='store_true', help='the model in bfloat16 (config.half_precision)')
  p.add_argument('--without_onednn', action='store_true', help='plan as an install without oneDNN')
  args = p.parse_args()
  if args.without_onednn:
    named = sorted(set(args.impls.split(',')) & {'onednn', 'onednn_bf16'})
    if named:
      sys.exit(f'error: --impls={args.impls} names {",".join(named)}, which --without_onednn turns off; '
               'give --impls=auto,kernel,xla')
    ffi.onednn_available = lambda: False  # the plans ask these two
    ffi.onednn_bfloat16_available = lambda: False
  config = default.get_config()
  config.half_precision = args.half_precision
  config.model.features = tuple(int(f) for f in args.features.split(','))
  config.dataset.image_size = args.image_size
  num_classes = 3
  base = build_model(config, num_classes)
  shape = (args.image_size, args.image_size, 1)
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.normal(size=(args.batch,) + shape), jnp.float32),
           'mask': jnp.asarray(rng.integers(0, num_classes, (args.batch,) + shape[:2]), jnp.int32)}
  hp = steps.make_hyperparams(config.frem.num_selected, config.frem.factor, 0.0)
  key = jax.random.key(1, impl='rbg')
  train_step = jax.jit(lambda s, b, h, k: steps.train_step(
      s, b, h, k, frem_enabled=True, supervision_enabled=False), donate_argnums=0)
  candidates = {}
  for impl in args.impls.split(','):
    model = base.clone(conv=functools.partial(base.conv, implementation=impl))
    state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), shape, 1e-3)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, hp, key).compile()
    candidates[impl] = {'compiled': compiled, 'state': state, 'times': [],
                        'compile_s': time.perf_counter() - t0}
  for r in range(args.rounds + 2):
    for impl, c in candidates.items():
      t0 = time.perf_counter()
      c['state'], m = c['compiled'](c['state'], batch, hp, key)
      jax.block_until_ready(m['loss'])
      if r >= 2:
        c['times'].append(time.perf_counter() - t0)
  print(json.dumps({
      'features': list(config.model.features), 'image_size': args.image_size, 'batch': args.batch,
      'rounds': args.rounds, 'onednn': 'off' if args.without_onednn else ffi.onednn_info(), 'onednn_threads': ffi.onednn_threads(),
      'jax': jax.__version__, 'half_precision': args.half_precision,
      'train_step_s': {impl: {'median': round(statistics.median(c['times']), 4),
                              'min': round(min(c['times']), 4), 'compile_s': round(c['compile_s'], 1)}
                       for impl, c in candidates.items()}}))


if __name__ == '__main__':
  main()
