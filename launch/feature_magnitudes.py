"""Fig. 3 at several measurement points: where is the deepest stage's activation smaller than the skip's?

The paper (Sec. 2, Fig. 3) compares "the average feature values at the yellow layer [the encoder's
last stage] and those at the skip connection from encoder to decoder", both "extracted after ReLU",
and finds the deepest stage clearly smaller. The training log records one choice of those points
(each stage's output, i.e. after ReLU and after the SE block's channel scaling, and the skip of the
first decoder stage). This script measures every candidate on the validation split from a run's
checkpoint, so that the choice can be checked against the paper's text:

  deepest/relu      the deepest stage after its second ReLU, before SE
  deepest/se        the deepest stage's output (after SE): what the log calls features/deepest_mean
  deepest/upconv    the up-convolution of the deepest stage: what is concatenated with the skip
  skip/relu         the skip (the encoder stage before the deepest) after its second ReLU, before SE
  skip/se           that stage's output (after SE): what the log calls features/skip_mean

usage: python launch/feature_magnitudes.py RUN_DIR [RUN_DIR ...] [--epoch=best|latest|N] [--out=FILE.json]
(N: one of the epochs the run keeps a checkpoint of, its best and its latest)
Prints one JSON object per run (and writes them all to --out).
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from frem_jax import cli
from frem_jax import input_pipeline
from frem_jax import trained_run


def _mean_activations(model, variables, split, batch_size: int) -> dict:
  n = len(model.features)
  deepest, skip, up = 'deepest', f'encoder{n - 2}', f'up{n - 2}'

  @jax.jit
  def sums(images):
    _, state = model.apply(variables, images, train=False, capture_intermediates=True,
                           mutable=['intermediates'])
    inter = state['intermediates']
    out = lambda *path: _get(inter, path)
    values = {
        'deepest/relu': jax.nn.relu(out(deepest, 'norm1')),
        'deepest/se': out(deepest, 'se'),
        'deepest/upconv': out(up),
        'skip/relu': jax.nn.relu(out(skip, 'norm1')),
        'skip/se': out(skip, 'se'),
    }
    return {k: (jnp.sum(v, dtype=jnp.float32), v.size) for k, v in values.items()}  # bfloat16 with half_precision

  total = {}
  for batch in input_pipeline.eval_batches(split, batch_size):
    weight = batch.get('weight')
    if weight is not None and float(np.min(weight)) == 0.0:  # padding images: measure the real ones only
      keep = np.asarray(weight).reshape(len(weight), -1).max(axis=1) > 0
      images = np.asarray(batch['image'])[keep]
    else:
      images = np.asarray(batch['image'])
    for k, (s, size) in jax.device_get(sums(images)).items():
      acc = total.setdefault(k, [0.0, 0])
      acc[0] += float(s)
      acc[1] += int(size)
  return {k: s / max(size, 1) for k, (s, size) in total.items()}


def _get(inter, path):
  node = inter
  for name in path:
    node = node[name]
  return node['__call__'][0]


def measure(workdir: str, which: str = 'best') -> dict:
  """Mean activations at each measurement point for checkpoint `which` of the run in `workdir`."""
  config, data, model, state, epoch = trained_run.restore_epoch(workdir, which)
  split = data.splits['validation']
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  means = _mean_activations(model, variables, split, config.eval_batch_size)
  return {'workdir': workdir, 'epoch': epoch, 'seed': int(config.seed),
          'frem': bool(config.frem.enabled), 'supervision': bool(config.supervision.enabled),
          'features': list(config.model.features), 'mean_activation': means,
          'deepest_over_skip': {p: means[f'deepest/{p}'] / means[f'skip/{p}'] for p in ('relu', 'se')}}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--epoch', default='best', help="'best', 'latest' or an epoch number")
  parser.add_argument('--out', default='')
  args = parser.parse_args(argv)
  cli.begin([parser.prog], positional=True)  # as every command: malloc tuned, the libraries quiet
  return cli.measure_each(args.runs, lambda run: measure(run, args.epoch), args.out)


if __name__ == '__main__':
  sys.exit(main())
