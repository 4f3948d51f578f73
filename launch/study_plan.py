"""The study's bookkeeping for launch/study.sh: which runs are finished, and the epochs and time still ahead.

Standard library only (it runs before and beside the training processes):
  study_plan.py finished RUN_DIR EPOCHS          exit 0 if RUN_DIR/results.json says EPOCHS epochs
  study_plan.py estimate OUT EPOCHS SEEDS METHODS DEFAULT_SECONDS_PER_EPOCH DEFAULT_NOTE
                                                 prints the plan: epochs still to train and the wall time

Seconds per epoch are measured from the runs already in OUT: a finished run's results.json
(train_seconds / epochs_completed), a partial run's latest checkpoint (its meta: train_seconds at
that epoch). The estimate is the median of the runs' rates (each run counts once, however many
epochs it has), because a run trained while the machine was shared (or paused) is several times
slower and would dominate a mean. Without any,
DEFAULT_SECONDS_PER_EPOCH (0: unknown) is used and DEFAULT_NOTE says where it comes from.
"""

import glob
import json
import os
import statistics
import sys


def _json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def progress(run_dir: str) -> tuple[int, float | None, bool, int | None]:
  """(epochs done, train seconds of those epochs or None, finished, epochs_completed of results.json)."""
  results = _json(os.path.join(run_dir, 'results.json'))
  if results and 'epochs_completed' in results:
    return int(results['epochs_completed']), results.get('train_seconds'), True, int(results['epochs_completed'])
  best = (0, None)
  for meta_path in glob.glob(os.path.join(run_dir, 'checkpoints', '*', 'meta', 'metadata')):
    meta = _json(meta_path)
    if meta and int(meta.get('epoch', 0)) > best[0]:
      best = (int(meta['epoch']), meta.get('train_seconds'))
  return best[0], best[1], False, None


def estimate(out: str, epochs: int, seeds: int, methods: list, default_spe: float, default_note: str) -> str:
  runs = [os.path.join(out, f'seed{s}', m) for s in range(seeds) for m in methods]
  remaining, to_train, rates = 0, 0, []
  for run in runs:
    done, train_seconds, finished, completed = progress(run)
    if train_seconds is not None and done > 0:
      rates.append(float(train_seconds) / done)
    if finished and completed == epochs:
      continue
    # A finished run trained for more epochs than asked is not shortened (train resumes from its
    # latest checkpoint and only re-evaluates): nothing left to train.
    left = max(epochs - done, 0)
    remaining += left
    to_train += 1
  lines = [f'{len(runs)} runs ({seeds} seeds × {len(methods)} methods, {epochs} epochs each): '
           f'{len(runs) - to_train} finished, {to_train} to run, {remaining} epochs still to train']
  if rates:
    spe = statistics.median(rates)
    source = (f'measured on the run already in {out}' if len(rates) == 1 else
              f'median over {len(rates)} runs already in {out}, {min(rates):.0f}–{max(rates):.0f} s/epoch')
  else:
    spe, source = default_spe, default_note
  if spe > 0:
    hours = remaining * spe / 3600
    lines.append(f'{spe:.0f} s/epoch ({source}): about {hours:.1f} h of training '
                 f'(plus each run\'s compile and test evaluation)')
  else:
    lines.append(f'no seconds-per-epoch measurement yet ({source}): no time estimate')
  return '\n'.join(lines)


def main(argv):
  if len(argv) == 4 and argv[1] == 'finished':
    _, _, finished, completed = progress(argv[2])
    return 0 if finished and completed == int(argv[3]) else 1
  if len(argv) == 8 and argv[1] == 'estimate':
    _, _, out, epochs, seeds, methods, spe, note = argv
    print(estimate(out, int(epochs), int(seeds), methods.split(','), float(spe), note))
    return 0
  print(__doc__, file=sys.stderr)
  return 2


if __name__ == '__main__':
  sys.exit(main(sys.argv))
