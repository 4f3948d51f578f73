"""The study's bookkeeping for launch/study.sh: which runs are finished, and the epochs and time still ahead.

Standard library only (it runs before and beside the training processes):
  study_plan.py finished RUN_DIR EPOCHS          exit 0 if RUN_DIR/results.json says EPOCHS epochs
  study_plan.py estimate OUT EPOCHS SEEDS METHODS DEFAULT_SECONDS_PER_EPOCH DEFAULT_NOTE
                                                 prints the plan: epochs still to train and the wall time
  study_plan.py tuned-estimate OUT EPOCHS MIN_EPOCHS ETA BX_TRIALS LAMBDA_TRIALS SEEDS DEFAULT_SPE DEFAULT_NOTE
                                                 the same for launch/tuned_study.sh, beside plain TPE's
                                                 and the paper's searches
  study_plan.py copy-run RUN_DIR NEW_DIR          copies a run's folder (not its lock) to NEW_DIR, which
                                                 appears only when complete
  study_plan.py ranked SEARCH_DIR RANK           prints "NUMBER STATUS EPOCHS VALUE..." of the trial
                                                 ranked RANK (1 = best.json's) in SEARCH_DIR/trials.json

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
import shutil
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


def _seconds_per_epoch(run_dirs: list, out: str, default_spe: float, default_note: str) -> tuple[float, str]:
  """The median seconds per epoch of `run_dirs` that have trained (each run once), else the default."""
  rates = []
  for run in run_dirs:
    done, train_seconds, _, _ = progress(run)
    if train_seconds is not None and done > 0:
      rates.append(float(train_seconds) / done)
  if not rates:
    return default_spe, default_note
  source = (f'measured on the run already in {out}' if len(rates) == 1 else
            f'median over {len(rates)} runs already in {out}, {min(rates):.0f}–{max(rates):.0f} s/epoch')
  return statistics.median(rates), source


def halving_epochs(trials: int, rungs: list, eta: int) -> int:
  """Epochs of synchronous successive halving: all trials to the first rung, the top 1/η on to each next.

  The asynchronous sweep (frem_jax/search/asha.py) promotes a little more: the first result at
  an empty rung always goes on.
  """
  total, alive, previous = 0, trials, 0
  for rung in rungs:
    total += alive * (rung - previous)
    alive, previous = max(1, alive // eta), rung
  return total


def rung_epochs(min_epochs: int, eta: int, epochs: int) -> list:
  """As frem_jax.search.asha.rung_epochs (this script imports nothing of frem_jax)."""
  rungs = [min_epochs] if min_epochs < epochs else []
  while rungs and rungs[-1] * eta * eta <= epochs:
    rungs.append(rungs[-1] * eta)
  return rungs + [epochs]


def tuned_estimate(out: str, epochs: int, min_epochs: int, eta: int, bx_trials: int, lambda_trials: int,
                   seeds: int, default_spe: float, default_note: str) -> str:
  """launch/tuned_study.sh's plan: epochs of each step, what is left, and the paper's searches on the same scale."""
  rungs = rung_epochs(min_epochs, eta, epochs)
  searches = {'search_bx': ('B, X', bx_trials, 50), 'search_lambda': ('λ', lambda_trials, 15)}
  lines, remaining, trained = [], 0, []
  for folder, (what, trials, paper_trials) in searches.items():
    planned = halving_epochs(trials, rungs, eta)
    trial_dirs = sorted(glob.glob(os.path.join(out, folder, 'trial_*')))
    done = sum(progress(d)[0] for d in trial_dirs)
    trained += trial_dirs
    remaining += max(planned - done, 0)
    lines.append(f'{what} search: {trials} trials, rungs {", ".join(map(str, rungs))}: about {planned} epochs '
                 f'with halving (plain TPE: {trials * epochs}); {done} trained so far')
  seed_runs = [os.path.join(out, f'seed{s}', m) for s in range(1, seeds) for m in ('frem_tuned', 'supervision_tuned')]
  seed_runs += [os.path.join(out, 'seed0', f'frem_rank{r}') for r in (2, 3)]
  trained += seed_runs
  seed_left = sum(max(epochs - progress(r)[0], 0) for r in seed_runs[:-2])
  runners_up = sum(max(epochs - progress(r)[0], 0) for r in seed_runs[-2:] if os.path.isdir(r))
  remaining += seed_left + runners_up
  lines.append(f'seeds 1..{seeds - 1} of the two winners: {2 * (seeds - 1)} runs × {epochs} epochs, {seed_left} '
               f'epochs still to train; the 2nd and 3rd (B, X): at most {2 * (epochs - rungs[0])} more')
  spe, source = _seconds_per_epoch(trained, out, default_spe, default_note)
  paper = (50 + 15) * 2000
  if spe > 0:
    lines.append(f'{spe:.0f} s/epoch ({source}): about {remaining} epochs, {remaining * spe / 3600:.1f} h, still to '
                 f'train (plus compiles and test evaluations); the paper\'s searches, 50 + 15 trials × 2000 '
                 f'epochs = {paper} epochs, would take {paper * spe / 3600:.0f} h here')
  else:
    lines.append(f'no seconds-per-epoch measurement yet ({source}): about {remaining} epochs still to train; '
                 f'the paper\'s searches are {paper} epochs')
  return '\n'.join(lines)


def ranked(search_dir: str, rank: int) -> str:
  """The trial ranked `rank` of a sweep as "NUMBER STATUS EPOCHS VALUE...", '' if there is none.

  Trials trained to the end ('ok') come first, by validation mIoU (best.json's is rank 1); then
  stopped trials by the rung they reached and their score there. Ties: the lower trial number.
  """
  record = _json(os.path.join(search_dir, 'trials.json'))
  if not record:
    return ''
  trials = [t for t in record['trials'] if t['status'] in ('ok', 'stopped') and t.get('val_miou') is not None]
  trials.sort(key=lambda t: (t['status'] != 'ok', -int(t.get('epochs') or 0), -t['val_miou'], t['number']))
  if len(trials) < rank:
    return ''
  t = trials[rank - 1]
  values = [t['values'][k] for k in ('num_selected', 'factor', 'weight') if k in t['values']]
  epochs = t.get('epochs') or record['config']['num_epochs']
  return ' '.join(str(v) for v in [t['number'], t['status'], epochs, *values])


def copy_run(run_dir: str, new_dir: str) -> None:
  """Copies `run_dir` to `new_dir` through a temporary folder, leaving out its lock file."""
  tmp = new_dir.rstrip('/') + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns('.lock'))
  os.rename(tmp, new_dir)


def main(argv):
  if len(argv) == 4 and argv[1] == 'finished':
    _, _, finished, completed = progress(argv[2])
    return 0 if finished and completed == int(argv[3]) else 1
  if len(argv) == 8 and argv[1] == 'estimate':
    _, _, out, epochs, seeds, methods, spe, note = argv
    print(estimate(out, int(epochs), int(seeds), methods.split(','), float(spe), note))
    return 0
  if len(argv) == 11 and argv[1] == 'tuned-estimate':
    out, *ints, spe, note = argv[2:]
    print(tuned_estimate(out, *map(int, ints), float(spe), note))
    return 0
  if len(argv) == 4 and argv[1] == 'copy-run':
    copy_run(argv[2], argv[3])
    return 0
  if len(argv) == 4 and argv[1] == 'ranked':
    line = ranked(argv[2], int(argv[3]))
    print(line)
    return 0 if line else 1
  print(__doc__, file=sys.stderr)
  return 2


if __name__ == '__main__':
  sys.exit(main(sys.argv))
