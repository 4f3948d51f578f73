"""The pilot's learning curve and the epoch where it levels off: how the study's --epochs is chosen.

Usage:
  python launch/pilot_curve.py RUN_DIR [--out=curve.png] [--fraction=0.2] [--points=0.5]

Reads RUN_DIR/metrics.jsonl and prints one JSON line: per epoch the validation mIoU, the best so
far, and `levelled_off_at`: the first epoch E from which on (to the end of the curve) the best
validation mIoU so far gains less than --points mIoU points over the last --fraction of the
epochs (from epoch floor((1 - fraction) E) to E), or null if the curve's last epoch is not such. The best so far is what a run reports (its best checkpoint), so the
criterion is read on it rather than on the epoch-to-epoch values, which swing by several points.
With --out it also draws both curves and marks E.
"""

import argparse
import itertools
import json
import math
import os
import sys


def best_so_far(values: list) -> list:
  """The running maximum of `values`."""
  return list(itertools.accumulate(values, max))


def gains(values: list, fraction: float = 0.2) -> list:
  """Per epoch E (1-based): the points (%) the best so far gained since epoch floor((1-fraction)·E), or None before that exists."""
  best = best_so_far(values)
  out = []
  for epoch in range(1, len(values) + 1):
    start = math.floor((1 - fraction) * epoch)
    out.append(None if start < 1 else (best[epoch - 1] - best[start - 1]) * 100)
  return out


def levelled_off_at(values: list, fraction: float = 0.2, points: float = 0.5):
  """The first epoch E (1-based) from which, up to the curve's end, the best so far gains < `points` per window; else None.

  `values` are the validation mIoUs of epochs 1, 2, ... as fractions (0.77 = 77 %). Requiring the
  criterion at every later epoch too keeps an early dip (a window of one or two epochs in which
  nothing improved) from counting as levelling off.
  """
  epoch = None
  for e, gain in enumerate(gains(values, fraction), 1):
    if gain is None or gain >= points:
      epoch = None
    elif epoch is None:
      epoch = e
  return epoch


def read_curve(run_dir: str) -> list:
  """The validation mIoU of every evaluated epoch of a run, in epoch order."""
  path = os.path.join(run_dir, 'metrics.jsonl')
  if not os.path.isfile(path):
    sys.exit(f'error: {path} does not exist; give the folder of a training run')
  rows = {}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if row.get('val/miou') is not None:
        rows[row['epoch']] = row['val/miou']
  if sorted(rows) != list(range(1, len(rows) + 1)):
    sys.exit(f'error: {path} does not have a validation mIoU for every epoch from 1; '
             'the criterion needs eval_every_epochs=1')
  return [rows[e] for e in sorted(rows)]


def draw(values: list, best: list, epoch, out: str, fraction: float, points: float) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  epochs = range(1, len(values) + 1)
  fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
  ax.plot(epochs, [v * 100 for v in values], lw=1, color='0.6', label='validation mIoU')
  ax.plot(epochs, [v * 100 for v in best], lw=2, color='C0', label='best so far')
  if epoch is not None:
    ax.axvline(epoch, color='C3', ls='--', lw=1,
               label=f'levels off at epoch {epoch} (< {points:g} points over the last {fraction:.0%})')
  ax.set_xlabel('epoch')
  ax.set_ylabel('mIoU [%]')
  ax.legend(loc='lower right', fontsize=8)
  fig.tight_layout()
  tmp = out + '.tmp.png'
  fig.savefig(tmp)
  os.replace(tmp, out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('run_dir')
  parser.add_argument('--out', default='')
  parser.add_argument('--fraction', type=float, default=0.2)
  parser.add_argument('--points', type=float, default=0.5)
  args = parser.parse_args()
  if not 0 < args.fraction < 1:
    sys.exit(f'error: --fraction={args.fraction} must be between 0 and 1')
  values = read_curve(args.run_dir)
  best = best_so_far(values)
  epoch = levelled_off_at(values, args.fraction, args.points)
  if args.out:
    draw(values, best, epoch, args.out, args.fraction, args.points)
  print(json.dumps({'epochs': len(values), 'levelled_off_at': epoch, 'fraction': args.fraction,
                    'points': args.points, 'val_miou': values, 'best_so_far': best}))


if __name__ == '__main__':
  main()
