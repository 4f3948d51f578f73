"""Plain TPE against TPE + successive halving: best validation mIoU found against epochs spent.

Usage (the synthetic data at the demo's narrow widths; resumable: re-run the same command):
  python launch/halving_study.py --out=studies/halving --seeds=0,1,2 --max_evals=20 \
      --num_epochs=27 --min_epochs=1 --reduction_factor=3 -- --config.search.n_startup_jobs=8

For every search seed it runs two sweeps of `--max_evals` trials with `python -m frem_jax.search`
(OUT/plain_seedS with search.halving=False, OUT/halving_seedS with True; both sweeps of a seed
propose the same first n_startup_jobs trials), then writes OUT/halving_study.json (per sweep:
the best validation mIoU among trials trained to num_epochs, the epochs spent, the wall time;
per seed the difference and the epochs ratio) and OUT/halving_study.png (best mIoU found so
far against cumulative epochs, in trial order) and OUT/halving_study.md (the table). Arguments
after `--` go to every sweep.
--dry-run prints the commands; --summary_only only rebuilds the JSON and the figure.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # frem_jax from this checkout, also when run as a script

MODES = ('plain', 'halving')


def sweep_command(args, mode: str, seed: int, extra: list) -> list:
  """The `frem_jax.search` command of one sweep."""
  return [args.python, '-m', 'frem_jax.search', f'--config={args.config}',
          f'--workdir={os.path.join(args.out, f"{mode}_seed{seed}")}',
          f'--config.search.seed={seed}', f'--config.search.max_evals={args.max_evals}',
          f'--config.num_epochs={args.num_epochs}', f'--config.search.halving={mode == "halving"}',
          f'--config.search.min_epochs={args.min_epochs}',
          f'--config.search.reduction_factor={args.reduction_factor}', *extra]


def sweep_summary(record: dict, num_epochs: int) -> dict:
  """Best validation mIoU among trials trained to `num_epochs`, the epochs spent, and the curve in trial order.

  A plain sweep's trial spent num_epochs (a failed one too, at most); a halving trial its `epochs`.
  The curve's points are (cumulative epochs, best so far) after each trial by number: for halving
  an approximation of time order, since a stopped trial may be promoted later.
  """
  spent, best, curve = 0, None, []
  for t in sorted(record['trials'], key=lambda t: t['number']):
    spent += t['epochs'] if 'epochs' in t else num_epochs
    if t['status'] == 'ok' and t.get('val_miou') is not None:
      best = t['val_miou'] if best is None else max(best, t['val_miou'])
    curve.append([spent, best])
  finished = [t for t in record['trials'] if t['status'] == 'ok']
  best_trial = max(finished, key=lambda t: (t['val_miou'], -t['number'])) if finished else None
  return {'trials': len(record['trials']), 'trained_to_the_end': len(finished),
          'stopped': sum(t['status'] == 'stopped' for t in record['trials']),
          'failed': sum(t['status'] == 'fail' for t in record['trials']),
          'best_val_miou': best, 'best_values': best_trial['values'] if best_trial else None,
          'epochs_spent': spent, 'wall_seconds': sum(t.get('wall_seconds') or 0.0 for t in record['trials']),
          'curve': curve}


def summarize(out: str, seeds: list, num_epochs: int) -> dict:
  """The study's JSON from the sweeps' trials.json files (missing sweeps are left out)."""
  sweeps, per_seed = {}, []
  for seed in seeds:
    row = {'seed': seed}
    for mode in MODES:
      path = os.path.join(out, f'{mode}_seed{seed}', 'trials.json')
      if os.path.exists(path):
        with open(path) as f:
          sweeps[f'{mode}_seed{seed}'] = s = sweep_summary(json.load(f), num_epochs)
        row[mode] = {'best_val_miou': s['best_val_miou'], 'epochs_spent': s['epochs_spent']}
    if all(m in row and row[m]['best_val_miou'] is not None for m in MODES):
      row['miou_points_below_plain'] = 100 * (row['plain']['best_val_miou'] - row['halving']['best_val_miou'])
      row['epochs_fraction_of_plain'] = row['halving']['epochs_spent'] / row['plain']['epochs_spent']
      row['meets_target'] = row['miou_points_below_plain'] <= 0.5 and row['epochs_fraction_of_plain'] <= 1 / 3
    per_seed.append(row)
  return {'target': 'halving within 0.5 mIoU points of plain TPE\'s best for at most 1/3 of its epochs',
          'per_seed': per_seed, 'sweeps': sweeps}


def table(study: dict) -> str:
  """The per-seed comparison as a Markdown table (mIoU in %)."""
  def pct(v):
    return 'n/a' if v is None else f'{100 * v:.2f}'
  lines = ['| seed | TPE best val mIoU | TPE epochs | TPE+halving best val mIoU | TPE+halving epochs | '
           'points below TPE | epochs / TPE\'s | target met |', '|---|---|---|---|---|---|---|---|']
  for row in study['per_seed']:
    plain, halving = row.get('plain', {}), row.get('halving', {})
    below, fraction = row.get('miou_points_below_plain'), row.get('epochs_fraction_of_plain')
    lines.append(f'| {row["seed"]} | {pct(plain.get("best_val_miou"))} | {plain.get("epochs_spent", "n/a")} | '
                 f'{pct(halving.get("best_val_miou"))} | {halving.get("epochs_spent", "n/a")} | '
                 f'{"n/a" if below is None else f"{below:.2f}"} | '
                 f'{"n/a" if fraction is None else f"{fraction:.2f}"} | {row.get("meets_target", "n/a")} |')
  return '\n'.join(lines) + '\n'


def plot(study: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from frem_jax import files  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
  colors = {'plain': 'tab:blue', 'halving': 'tab:red'}
  labels = {'plain': 'TPE', 'halving': 'TPE + halving'}
  for name, s in study['sweeps'].items():
    mode = name.split('_seed')[0]
    points = [(e, 100 * b) for e, b in s['curve'] if b is not None]
    if points:
      ax.step(*zip(*points), where='post', color=colors[mode], alpha=0.7, label=labels.pop(mode, None))
      ax.plot(*points[-1], 'o', color=colors[mode])
  ax.set_xlabel('epochs spent (all trials)')
  ax.set_ylabel('best validation mIoU found [%]')
  ax.set_title('Plain TPE vs TPE + successive halving (one line per search seed)', fontsize=10)
  ax.legend(loc='lower right', fontsize=8)
  fig.tight_layout()
  files.save_figure_atomic(fig, path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='folder of the study: one sweep folder per mode and seed')
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--seeds', default='0,1,2', help='search seeds (search.seed), comma-separated')
  parser.add_argument('--max_evals', type=int, default=20, help='trials per sweep (both modes)')
  parser.add_argument('--num_epochs', type=int, default=27)
  parser.add_argument('--min_epochs', type=int, default=1)
  parser.add_argument('--reduction_factor', type=int, default=3)
  parser.add_argument('--python', default=sys.executable)
  parser.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
  parser.add_argument('--summary_only', action='store_true', help='only rebuild the JSON and the figure')
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != '--']
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad:
    parser.error(f'unknown argument {bad[0]} (after --, only --config.KEY=VALUE)')
  seeds = [int(s) for s in args.seeds.split(',')]
  if not args.summary_only:
    for seed in seeds:
      for mode in MODES:
        command = sweep_command(args, mode, seed, extra)
        print('+ ' + ' '.join(command), flush=True)
        if not args.dry_run:
          subprocess.run(command, cwd=ROOT, check=True)
  if args.dry_run:
    return
  study = summarize(args.out, seeds, args.num_epochs)
  study['command'] = sys.argv
  from frem_jax import files  # pylint: disable=g-import-not-at-top
  files.write_json_atomic(os.path.join(args.out, 'halving_study.json'), study)
  plot(study, os.path.join(args.out, 'halving_study.png'))
  files.write_text_atomic(os.path.join(args.out, 'halving_study.md'), table(study))
  print(table(study))
  print(f'study: {os.path.join(args.out, "halving_study.json")} (table: halving_study.md, '
        f'figure: halving_study.png)')


if __name__ == '__main__':
  main()
