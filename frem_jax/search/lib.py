"""TPE search of B and X (or λ): a resumable outer loop around `train_and_evaluate`.

Usage: python -m frem_jax.search --config=configs/mouse.py --workdir=DIR [--plot_only]
(search/__main__.py; --backend=ray: search/ray_tune.py, docs/search_ray.md). Each trial trains to the end in DIR/trial_NNN and is scored by its best
validation mIoU (TPE minimises its negative); its test mIoU is recorded but
never used for choosing. DIR/trials.json is rewritten after every trial, so a
sweep stopped at any point continues where it was when re-run; with N local
devices N trials run side by side, one per device, and with `search.population`
= K, K trials per device trained together (train/population.py). With search.halving the trials
train rung by rung and most stop early (search/halving.py, docs/search.md).
"""

import concurrent.futures
import functools
import os
import sys
import time

from absl import logging
from hyperopt import base
from hyperopt import tpe
import jax
import ml_collections
from tqdm import tqdm

from frem_jax import datasets
from frem_jax import train
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.errors import TrainingDiverged
from frem_jax.errors import UserError
from frem_jax.search import halving as search_halving
from frem_jax.search import plot as search_plot
from frem_jax.search import space as search_space
from frem_jax.search import store as search_store


def _run_trial(config, resolved, workdir, entry, device) -> dict:
  """Trains one trial on `device`; returns the entry's outcome fields (a failed trial is an outcome too).

  Raises UserError only for the user's mistakes (missing data, say), which would fail every trial.
  """
  t0 = time.perf_counter()
  trial_dir = os.path.join(workdir, entry['workdir'])
  try:
    trial = search_space.trial_config(config, resolved['space'], entry['values'])
    outcome = _outcome(train.train_and_evaluate(trial, trial_dir, devices=[device]))
  except TrainingDiverged as e:
    outcome = _failed(entry, e)
  except UserError:
    raise  # the user's mistake (e.g. the data), not the trial's: stop the sweep
  except Exception as e:  # pylint: disable=broad-except  # a failed trial must not stop the sweep
    outcome = _failed(entry, e)
  outcome['device'] = str(device)
  outcome['wall_seconds'] = time.perf_counter() - t0
  return outcome


def _outcome(results: dict) -> dict:
  """The outcome fields of a trial from its results.json; ValueError if it has no validation mIoU."""
  search_store.check_scored(results)
  return {'status': 'ok', 'reason': None, 'val_miou': results['val']['miou'],
          'best_epoch': results['best_epoch'], 'test_miou': results['test']['miou'],
          'test_iou_per_class': results['test']['iou_per_class']}


def _run_alone(config, resolved, workdir, entries, device) -> list:
  """The outcome of the one trial of `entries`, as a list (search.population=1: the paper's protocol)."""
  (entry,) = entries
  return [_run_trial(config, resolved, workdir, entry, device)]


def _run_population(config, resolved, workdir, entries, device) -> list:
  """Trains the trials of `entries` together on `device` (`train.train_population`); returns their outcomes.

  A trial that diverges or scores nothing fails alone; any other error fails them all.
  Raises UserError only for the user's mistakes, as `_run_trial`.
  """
  t0 = time.perf_counter()
  try:
    trials = [search_space.trial_config(config, resolved['space'], e['values']) for e in entries]
    dirs = [os.path.join(workdir, e['workdir']) for e in entries]
    outcomes = []
    for entry, result in zip(entries, train.train_population(trials, dirs, device)):
      try:
        if isinstance(result, Exception):
          raise result
        outcomes.append(_outcome(result))
      except (TrainingDiverged, ValueError) as e:
        outcomes.append(_failed(entry, e))
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # a failed population must not stop the sweep
    outcomes = [_failed(entry, e) for entry in entries]
  wall_seconds = time.perf_counter() - t0  # the population's: its trials ran together
  for outcome in outcomes:
    outcome['device'] = str(device)
    outcome['wall_seconds'] = wall_seconds
  return outcomes


def _failed(entry: dict, error: Exception) -> dict:
  reason = search_store.failure_reason(error)
  logging.warning('Trial %d failed: %s', entry['number'], reason)
  return {'status': 'fail', 'reason': reason, 'val_miou': None, 'best_epoch': None,
          'test_miou': None, 'test_iou_per_class': None}


def _ask(trials, domain, resolved: dict, number: int) -> dict:
  """A new trial entry with TPE's proposal (seeded by search.seed and the trial number)."""
  suggest = functools.partial(tpe.suggest, n_startup_jobs=resolved['n_startup_jobs'])
  doc = suggest([number], domain, trials, resolved['seed'] * 100_003 + number)[0]
  vals = {k: v[0] for k, v in doc['misc']['vals'].items() if v}
  entry = {'number': number, 'values': search_space.plain_values(vals), 'status': 'running',
          'reason': None, 'val_miou': None, 'best_epoch': None, 'test_miou': None,
          'test_iou_per_class': None, 'wall_seconds': None, 'device': None, 'workdir': f'trial_{number:03d}'}
  # Pending, so that TPE's next proposal (scoring it as a loss of +inf) goes elsewhere.
  search_store.tell(trials, domain, entry, insert=True)
  return entry


@workdir_lock.holding('workdir', '--workdir')  # the sweep's folder; each trial also locks its own
def run_search(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Runs (or continues) the sweep of `config.search` in `workdir`; returns the final record.

  Trials that were started but not finished (a killed sweep) are run again
  first with their recorded values, resuming from their own checkpoints.
  """
  resolved = search_space.resolve(config)
  workdir_lib.check_not_a_file(workdir)
  record = search_store.open_record(workdir, config, resolved)
  os.makedirs(workdir, exist_ok=True)
  config = datasets.with_data_dir(config, workdir)  # all trials share one prepared copy of the data
  datasets.load_dataset(config, config.dataset.data_dir)  # prepares it once; a UserError stops here
  domain = base.Domain(lambda _: 0.0, search_space.hyperopt_space(resolved))
  trials = search_store.hyperopt_trials(record, domain)
  devices = list(devices or jax.local_devices())
  if config.search.halving:
    search_halving.run_sweep(
        config, record, workdir, devices, resolved['max_evals'],
        run_trial=lambda trial_config, entry, device: _run_trial(trial_config, resolved, workdir, entry, device),
        ask=lambda number: _ask(trials, domain, resolved, number),
        tell=lambda entry: search_store.tell(trials, domain, entry))
    search_plot.plot(record, workdir)
    return record
  pending = [e for e in record['trials'] if e['status'] == 'running']
  finished = sum(e['status'] in ('ok', 'fail') for e in record['trials'])
  max_evals = resolved['max_evals']
  bar = tqdm(total=max_evals, initial=min(finished, max_evals), desc='trials', unit='trial', file=sys.stderr)
  size = config.search.population  # trials per device at a time (K)
  running = {}  # future -> (its trials, device)
  with concurrent.futures.ThreadPoolExecutor(max_workers=len(devices)) as pool:
    free = list(devices)
    while True:
      while free and (pending or finished + sum(len(g) for g, _ in running.values()) < max_evals):
        # K proposals at once: each is pending in `trials` when TPE is asked for the next.
        group = []
        while len(group) < size and (pending or finished + sum(len(g) for g, _ in running.values())
                                     + len(group) < max_evals):
          entry = pending.pop(0) if pending else _ask(trials, domain, resolved, len(record['trials']))
          if entry not in record['trials']:
            record['trials'].append(entry)
            search_store.save(workdir, record)
          group.append(entry)
        device = free.pop(0)
        for entry in group:
          logging.info('Trial %d on %s: %s', entry['number'], device, entry['values'])
        run = _run_population if size > 1 else _run_alone
        running[pool.submit(run, config, resolved, workdir, group, device)] = (group, device)
      if not running:
        break
      done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in done:
        group, device = running.pop(future)
        for entry, outcome in zip(group, future.result()):
          entry.update(outcome)
          search_store.tell(trials, domain, entry)
          search_store.save(workdir, record)
          finished += 1
          bar.update(1)
          logging.info('Trial %d: %s, val mIoU %s', entry['number'], entry['status'], entry['val_miou'])
        free.append(device)
  bar.close()
  search_plot.plot(record, workdir)
  return record
