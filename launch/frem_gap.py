"""Where a FREM run loses at test: validation mIoU of one checkpoint with FREM off, on, and with re-estimated statistics.

FREM multiplies B (`frem.num_selected`) channels of the deepest stage by X (`frem.factor`) in
training and is the identity at test (Sec. 3). The layers after it see X-times larger inputs in
every training step, and their batch-renorm running statistics (the ones used at test) are
estimated from those inputs. This script separates what that costs at one checkpoint, on the
validation split:

  frem_off               FREM off, as the run is tested (equals the log's val/miou of that epoch)
  frem_on_own_channels   FREM on with the channels the checkpoint's own epoch trained with (None for
                         a run with frem.redraw='step': its epochs have no one set of channels)
  frem_on_test_channels  FREM on with the channels this project's Table 1 uses at test (epoch 0's
                         key, which training never draws)
  frem_off_restats       FREM off, after re-estimating the running statistics of every
                         batch-renorm layer (encoder included) on the training split with FREM
                         off: --passes passes of training-mode forward steps, each updating the
                         running averages as training does (momentum `model.norm_momentum`), so a
                         share momentum^steps of the trained statistics remains (0.99^560 = 0.4 %
                         for 10 passes of 56 steps). The weights stay as trained. Not part of the
                         paper's method: a diagnostic of how much of the gap lives in the statistics.
  frem_off_precise       FREM off, with the statistics training re-estimates under
                         eval.reestimate_statistics (frem_jax/statistics.py): the average of every
                         layer's FREM-off, plain batch-norm batch moments over one pass of the
                         training split in the checkpoint epoch's batch order. No trace of the
                         trained statistics remains, whatever --passes.
A run without FREM (the baseline, as a control) gets frem_off, frem_off_restats and frem_off_precise.

frem_off_restats keeps its running-average re-estimation, not the library's precise one, so that it
means what it meant for the numbers in docs/fidelity/frem_gap.json; frem_off_precise is the
library's. A run trained with eval.reestimate_statistics=True holds re-estimated statistics in its
checkpoints (those of an epoch without validation excepted): its frem_off is then already
re-estimated, and frem_off_precise equals it.

usage: python launch/frem_gap.py RUN_DIR [RUN_DIR ...] [--epoch=best|latest|N] [--passes=10] [--out=FILE.json]
Prints one JSON object per run (and writes them all to --out).
"""

import argparse
import os
import sys

import jax
import numpy as np

from frem_jax import cli
from frem_jax import epochs as epochs_lib
from frem_jax import input_pipeline
from frem_jax import metrics
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import train
from frem_jax import trained_run


def reestimate_running_stats(model, state, images: np.ndarray, batch_size: int, seed: int, passes: int):
  """`state` with its running statistics re-estimated by `passes` passes of FREM-off training-mode forward steps."""

  @jax.jit
  def forward(variables, batch):
    _, updated = model.apply(variables, batch, train=True, enhancement=None, mutable=['batch_stats'])
    return updated['batch_stats']

  batch_stats = state.batch_stats
  for p in range(passes):
    order = input_pipeline.epoch_order(len(images), seed, p)
    for start in range(0, len(images) - batch_size + 1, batch_size):
      batch_stats = forward({'params': state.params, 'batch_stats': batch_stats},
                            images[order[start:start + batch_size]])
  return state.replace(batch_stats=batch_stats)


def measure(workdir: str, which: str = 'best', passes: int = 10) -> dict:
  """The validation mIoUs of checkpoint `which` of the run in `workdir` (module docstring)."""
  config, data, model, state, epoch = trained_run.restore_epoch(workdir, which)
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  hparams = train.hyperparams(config)
  off = epochs_lib.jit_eval_step(data.num_classes, mesh)
  on = epochs_lib.jit_eval_step(data.num_classes, mesh, frem_at_test=True)
  split = data.splits['validation']

  def miou(fn, state_, key_epoch):
    key = randomness.frem_epoch_key(config.seed, key_epoch, config.frem.mode)
    sums = train.evaluate(fn, state_, split, config.eval_batch_size, hparams, key)
    return metrics.summarize(sums['confusion'], data.class_names)['miou']

  restated = reestimate_running_stats(model, state, data.splits['train'].images, config.batch_size,
                                      config.seed, passes)
  precise = state.replace(batch_stats=train.reestimator(config, data, mesh)(state.params, state.batch_stats, epoch))
  own = config.frem.enabled and config.frem.get('redraw', 'epoch') == 'epoch'
  return {'workdir': workdir, 'epoch': epoch, 'seed': int(config.seed),
          'num_selected': int(config.frem.num_selected) if config.frem.enabled else None,
          'factor': float(config.frem.factor) if config.frem.enabled else None,
          'passes': passes,
          'frem': bool(config.frem.enabled),
          'val_miou': {'frem_off': miou(off, state, epoch),
                       'frem_on_own_channels': miou(on, state, epoch) if own else None,
                       'frem_on_test_channels': miou(on, state, 0) if config.frem.enabled else None,
                       'frem_off_restats': miou(off, restated, epoch),
                       'frem_off_precise': miou(off, precise, epoch)}}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--epoch', default='best', help="'best', 'latest' or an epoch number")
  parser.add_argument('--passes', default='10', help='passes over the training split to re-estimate statistics')
  parser.add_argument('--out', default='')
  args = parser.parse_args(argv)
  cli.begin([parser.prog], positional=True)  # as every command: malloc tuned, the libraries quiet
  if not args.passes.isdigit():
    print(f'error: --passes={args.passes} must be an integer >= 0', file=sys.stderr)
    return 1
  return cli.measure_each(args.runs, lambda run: measure(run, args.epoch, int(args.passes)), args.out)


if __name__ == '__main__':
  sys.exit(main())
