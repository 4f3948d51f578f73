"""`trials.json`: the record of a sweep, rewritten atomically after every trial, and hyperopt's Trials rebuilt from it."""

import json
import math
import os

from hyperopt import base
from hyperopt import Trials
import ml_collections

from frem_jax import files
from frem_jax import workdir as workdir_lib
from frem_jax.errors import UserError
from frem_jax.filenames import BEST_FILE
from frem_jax.filenames import TRIALS_FILE

FORMAT = 1
# Config keys that may differ when a sweep is resumed: more trials, or the data moved.
RESUMABLE_KEYS = ('search.max_evals', 'dataset.source_dir', 'dataset.data_dir', 'model.layers',
                  'search.population')


def failure_reason(error: BaseException) -> str:
  """A failed trial's `reason` in the record: the error's type and message, on one line."""
  return ' '.join(f'{type(error).__name__}: {error}'.split())


def check_scored(results: dict) -> None:
  """ValueError unless a trial's results.json has a finite validation mIoU: one that scored nothing failed."""
  miou = results['val']['miou']
  if miou is None or not math.isfinite(miou):
    raise ValueError(f'validation mIoU is {miou}')


def load(workdir: str) -> dict:
  """The record in `workdir/trials.json`; UserError names the file if it is unreadable (it is left as is)."""
  path = os.path.join(workdir, TRIALS_FILE)
  if not os.path.isfile(path):
    raise UserError(f'{path} does not exist: run the search in --workdir={workdir} first')
  try:
    with open(path) as f:
      record = json.load(f)
    if record.get('format') != FORMAT or not isinstance(record.get('trials'), list):
      raise ValueError('not a frem_jax trials file')
  except (OSError, ValueError, AttributeError) as e:
    raise UserError(f'{path} is corrupted ({e}); it was left untouched: move it away to start '
                    'a new sweep, or restore it') from e
  return record


def open_record(workdir: str, config: ml_collections.ConfigDict, resolved: dict) -> dict:
  """The sweep record of `workdir`: loaded and checked against `config` and the space, or new."""
  path = os.path.join(workdir, TRIALS_FILE)
  config_json = workdir_lib.config_to_json(config)
  if not os.path.exists(path):
    return {'format': FORMAT, 'space': resolved, 'config': config_json, 'trials': []}
  record = load(workdir)
  old_space = {k: v for k, v in record['space'].items() if k != 'max_evals'}
  new_space = {k: v for k, v in resolved.items() if k != 'max_evals'}
  if old_space != new_space:
    raise UserError(f'{path} was made with another search space ({old_space}); use a new --workdir '
                    'for this space, or the same config to continue')
  diffs = workdir_lib.config_differences(record['config'], config_json, RESUMABLE_KEYS)
  if diffs:
    key, old, new = diffs[0]
    raise UserError(f'{path} was made with another config ({key}: {old!r} -> {new!r}); use a new '
                    '--workdir, or the same config to continue')
  record['space'], record['config'] = resolved, config_json
  return record


def save(workdir: str, record: dict) -> None:
  """Rewrites `workdir/trials.json` atomically, and `best.json` naming the best finished trial."""
  files.write_json_atomic(os.path.join(workdir, TRIALS_FILE), record)
  best = best_trial(record)
  if best is not None:
    files.write_json_atomic(os.path.join(workdir, BEST_FILE), best)


def best_trial(record: dict):
  """The ok trial with the highest validation mIoU (the earliest on ties), or None."""
  ok = [t for t in record['trials'] if t['status'] == 'ok' and t.get('val_miou') is not None]
  return max(ok, key=lambda t: (t['val_miou'], -t['number'])) if ok else None


def loss(entry: dict):
  """TPE's loss of a finished trial: -(best validation mIoU); None for a failed or pending one.

  With successive halving a stopped (or promoted) trial's loss is that of the last rung it
  reached, its `rung_scores[-1]` (as Ray Tune's HyperOptSearch is told a stopped trial's last result).
  """
  if entry['status'] == 'ok':
    return -entry['val_miou']
  if entry['status'] in ('stopped', 'running') and entry.get('rung_scores'):
    return -entry['rung_scores'][-1]
  return None


def hyperopt_trials(record: dict, domain: base.Domain) -> Trials:
  """hyperopt's Trials rebuilt from the record (finished trials done or failed, started ones running)."""
  trials = Trials()
  for entry in record['trials']:
    tell(trials, domain, entry, insert=True)
  trials.refresh()
  return trials


def tell(trials: Trials, domain: base.Domain, entry: dict, insert: bool = False) -> None:
  """Inserts (or updates) the hyperopt document of `entry`."""
  tid = entry['number']
  if loss(entry) is not None:
    result, state = {'loss': loss(entry), 'status': base.STATUS_OK}, base.JOB_STATE_DONE
  elif entry['status'] == 'fail':
    result, state = {'status': base.STATUS_FAIL}, base.JOB_STATE_ERROR
  else:
    result, state = {'status': base.STATUS_NEW}, base.JOB_STATE_RUNNING
  if insert:
    misc = {'tid': tid, 'cmd': domain.cmd, 'workdir': None,
            'idxs': {k: [tid] for k in entry['values']},
            'vals': {k: [float(v)] for k, v in entry['values'].items()}}
    doc = trials.new_trial_docs([tid], [None], [result], [misc])[0]
    doc['state'] = state
    trials.insert_trial_docs([doc])
  else:
    for doc in trials._dynamic_trials:  # pylint: disable=protected-access
      if doc['tid'] == tid:
        doc['state'], doc['result'] = state, result
  trials.refresh()
