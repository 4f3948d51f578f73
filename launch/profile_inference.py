"""Profiles the paper model's inference step on the CPU: milliseconds per operation, each custom call named by its target.

Usage: python launch/profile_inference.py [--batch=8] [--image_size=256] [--rounds=3]
           [--half_precision] [--trace_dir=DIR]

The model is `build_model`'s for configs/default.py (the CPU wing's layers where they
apply), run as `python -m frem_jax.bench` runs inference (eval mode, logits), with the
malloc settings applied. After two warm-up calls, `--rounds` calls are traced with
`jax.profiler.trace`; the trace's XLA operations are summed per operation and divided by
the rounds. Prints a table, largest first: the custom calls (`frem_dnnl_conv3x3`:
oneDNN's 3x3 convolution, `frem_upconv2x2`: ours, ...) one row per call with its output
shape, XLA's own fused operations one row per kind, then the sums.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frem_jax.cpu import malloc  # noqa: E402

malloc.tune_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import default  # noqa: E402
from frem_jax import datasets  # noqa: E402
from frem_jax import steps  # noqa: E402
from frem_jax.build import build_model  # noqa: E402


def custom_calls(hlo_text: str) -> dict:
  """{'ffi_call.N': 'target f32[...]'} from a compiled module's HLO text."""
  calls = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?(ffi_call\.\d+|custom-call\.\d+) = (\S+) .*custom_call_target="([^"]+)"', line)
    if m:
      calls[m.group(1)] = f'{m.group(3)} {m.group(2).split("{")[0]}'
  return calls


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--image_size', type=int, default=256)
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--half_precision', action='store_true')
  p.add_argument('--trace_dir', default='', help='where the trace goes (default: a temporary folder)')
  args = p.parse_args()
  if args.batch < 1 or args.rounds < 1:
    sys.exit(f'error: --batch={args.batch} and --rounds={args.rounds} must be at least 1')
  config = default.get_config()
  config.half_precision = args.half_precision
  model = build_model(config, len(datasets.class_names(config.dataset)))  # as `bench` builds it
  shape = (args.image_size, args.image_size, 1)
  state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), shape, 1e-3)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch,) + shape), jnp.float32)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  infer = steps.jit_logits(model)
  names = custom_calls(infer.lower(variables, x).compile().as_text())
  for _ in range(2):
    jax.block_until_ready(infer(variables, x))
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix='frem_profile_')
  with jax.profiler.trace(trace_dir):
    for _ in range(args.rounds):
      jax.block_until_ready(infer(variables, x))
  trace = sorted(glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', '*.trace.json.gz')))[-1]
  with gzip.open(trace) as f:
    events = [e for e in json.load(f)['traceEvents'] if e.get('ph') == 'X']
  ops = collections.defaultdict(float)
  for e in events:
    op = (e.get('args') or {}).get('hlo_op')
    if op is None or e['name'] != op:
      continue  # the runtime's own spans, not an operation of the module
    key = f'{op}: {names[op]}' if op in names else op.split('.')[0]
    ops[key] += e['dur'] / 1e3 / args.rounds
  steps_ms = [e['dur'] / 1e3 for e in events if e['name'] == 'ThunkExecutor::Execute (wait for completion)']
  print(f'# inference, batch {args.batch}, {args.image_size}², half_precision={args.half_precision}; '
        f'{jax.__version__}; trace {trace}')
  print('| operation | ms per step |\n|---|---|')
  for key, ms in sorted(ops.items(), key=lambda kv: -kv[1]):
    print(f'| {key} | {ms:.1f} |')
  custom = sum(ms for key, ms in ops.items() if ':' in key)
  print(f'| custom calls, sum | {custom:.1f} |\n| XLA operations, sum | {sum(ops.values()) - custom:.1f} |')
  print(f'| the step (median of {len(steps_ms)}) | {sorted(steps_ms)[len(steps_ms) // 2]:.1f} |')


if __name__ == '__main__':
  main()
