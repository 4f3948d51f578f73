"""The TPE sweep with successive halving (`search.halving`): trials trained rung by rung, ASHA decides.

A trial trains to its next rung (a normal run with `num_epochs` = the rung, resumed from its
own checkpoint), reports its best validation mIoU there to the scheduler (`asha.Asha`), and
goes on or stops. Asked for work, the sweep first resumes a stopped trial that became
promotable, else starts a new TPE trial, until `search.max_evals` trials were started.
`trials.json` is rewritten after every rung, and the scheduler is rebuilt from it on resume.
"""

import concurrent.futures
import sys
from typing import Callable

from absl import logging
import ml_collections
from tqdm import tqdm

from frem_jax.search import asha as asha_lib
from frem_jax.search import store as search_store

SETTLED = ('ok', 'stopped', 'fail')


def settings(config: ml_collections.ConfigDict) -> dict:
  """min_epochs, reduction_factor (η) and the rungs' epochs of `config`'s sweep."""
  eta = config.search.reduction_factor
  min_epochs = config.search.min_epochs
  if min_epochs is None:
    min_epochs = asha_lib.default_min_epochs(config.num_epochs, eta)
  return {'min_epochs': int(min_epochs), 'reduction_factor': eta,
          'rungs': list(asha_lib.rung_epochs(min_epochs, eta, config.num_epochs))}


def scheduler(config: ml_collections.ConfigDict, entries) -> asha_lib.Asha:
  """The sweep's scheduler, rebuilt from its trials' entries."""
  s = settings(config)
  return asha_lib.Asha.from_trials(entries, s['min_epochs'], s['reduction_factor'], config.num_epochs)


def _at_epochs(config: ml_collections.ConfigDict, epochs: int) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  config.num_epochs = epochs
  return config


def _update(entry: dict, outcome: dict) -> None:
  """Merges a rung's outcome into the entry; wall_seconds add up over the rungs."""
  wall = (entry.get('wall_seconds') or 0.0) + outcome['wall_seconds']
  entry.update({k: v for k, v in outcome.items() if k != 'status'}, wall_seconds=wall)


def run_sweep(config: ml_collections.ConfigDict, record: dict, workdir: str, devices: list,
              max_evals: int, run_trial: Callable, ask: Callable, tell: Callable) -> None:
  """Runs (or continues) the halving sweep of `record` in place, saving `workdir/trials.json` as it goes.

  run_trial(config, entry, device) trains `entry` to `config.num_epochs` and returns its outcome
  (search._run_trial); ask(number) is a new TPE entry, told as pending; tell(entry) tells TPE
  an entry's state (a stopped or promoted trial's loss is its last rung's score).
  """
  entries = record['trials']
  record['halving'] = settings(config)
  asha = scheduler(config, entries)
  by_number = {e['number']: e for e in entries}
  # Trials cut off by a kill go first, each to the rung after the last one it reached.
  queue = [e for e in entries if e['status'] == 'running']
  bar = tqdm(total=max_evals, initial=sum(e['status'] in SETTLED for e in entries),
             desc='trials (halving)', unit='trial', file=sys.stderr)

  def next_work():
    if queue:
      return queue.pop(0)
    promoted = asha.promotion()
    if promoted:
      entry = by_number[promoted[0]]
      entry['status'] = 'running'
      logging.info('Trial %d promoted from %d to %d epochs.', entry['number'], entry['epochs'], promoted[1])
      return entry
    if len(entries) < max_evals:
      entry = ask(len(entries))
      entry.update(epochs=0, rung_scores=[])
      entries.append(entry)
      by_number[entry['number']] = entry
      return entry
    return None

  running = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=len(devices)) as pool:
    free = list(devices)
    while True:
      while free:
        entry = next_work()
        if entry is None:
          break
        search_store.save(workdir, record)
        target = asha.next_rung(entry['epochs'])
        device = free.pop(0)
        logging.info('Trial %d on %s to %d epochs: %s', entry['number'], device, target, entry['values'])
        running[pool.submit(run_trial, _at_epochs(config, target), entry, device)] = (entry, target, device)
      if not running:
        break
      done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in done:
        entry, target, device = running.pop(future)
        outcome = future.result()
        _update(entry, outcome)
        if outcome['status'] == 'fail':
          asha.fail(entry['number'])
          entry['status'] = 'fail'
        else:
          entry['epochs'] = target
          entry['rung_scores'].append(outcome['val_miou'])
          decision = asha.report(entry['number'], target, outcome['val_miou'])
          entry['status'] = {asha_lib.CONTINUE: 'running', asha_lib.STOP: 'stopped',
                             asha_lib.FINISH: 'ok'}[decision]
          if decision == asha_lib.CONTINUE:
            queue.insert(0, entry)
        tell(entry)
        search_store.save(workdir, record)
        free.append(device)
        bar.n = sum(e['status'] in SETTLED for e in entries)
        bar.refresh()
        logging.info('Trial %d at %d epochs: %s, val mIoU %s', entry['number'], entry['epochs'],
                     entry['status'], entry['val_miou'])
  bar.close()
