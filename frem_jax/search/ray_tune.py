"""The TPE sweep on Ray Tune (`python -m frem_jax.search --backend=ray`): the same space, seed and files.

Ray is an optional extra (`pip install -e '.[ray]'`), imported only inside these functions.
`ray.tune.Tuner` runs `search.max_evals` trials proposed by `HyperOptSearch` (the same hyperopt
space as the local sweep, seeded by `search.seed`), each a normal `train.train_and_evaluate`
run in DIR/trial_NNN on its own GPU (or CPU share), with `ASHAScheduler` when `search.halving`
is on. Ray keeps its experiment in DIR/ray (restored with `Tuner.restore` when the same command
is run again); a callback in the driver rewrites DIR/trials.json and best.json, in the local
sweep's schema, whenever a trial starts or ends, so `report` and `--plot_only` read it as is.
On a cluster DIR must be a folder every node sees at the same path (NFS, say).
"""

import json
import math
import os
import socket
import sys
import time

from absl import logging
import ml_collections

from frem_jax import compilation_cache
from frem_jax import datasets
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.errors import UserError
from frem_jax.search import asha
from frem_jax.search import plot as search_plot
from frem_jax.search import space as search_space
from frem_jax.search import store as search_store

EXPERIMENT = 'ray'  # Ray's own folder inside the sweep's: DIR/ray
METRIC = 'val_miou'  # a trial's score: its best validation mIoU so far (TPE minimises its negative)
INSTALL = "pip install -e '.[ray]'"
CONNECT_TIMEOUT_S = 10.0
# How often Ray saves the experiment (its trials and HyperOptSearch's state) to DIR/ray: a sweep
# killed in between forgets its newest proposals and asks again (their trial_NNN is set aside).
CHECKPOINT_PERIOD_S = '5'


def _import_tune():
  """ray and ray.tune, or a UserError saying how to install them."""
  try:
    import ray  # pylint: disable=g-import-not-at-top
    from ray import tune  # pylint: disable=g-import-not-at-top
    from ray.tune.search.hyperopt import HyperOptSearch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise UserError(f'--backend=ray needs Ray Tune, which is not installed ({e}): {INSTALL}') from e
  return ray, tune


def check_options(max_concurrent_trials: int, cpus_per_trial: float, gpus_per_trial) -> None:
  """UserError naming a bad resource or concurrency setting."""
  if not isinstance(max_concurrent_trials, int) or max_concurrent_trials < 0:
    raise UserError(f'--max_concurrent_trials={max_concurrent_trials} must be an integer >= 1, or 0 '
                    '(as many trials at once as the cluster has GPUs, or CPUs, for them)')
  if not cpus_per_trial > 0:
    raise UserError(f'--cpus_per_trial={cpus_per_trial} must be > 0')
  if gpus_per_trial is not None and (not isinstance(gpus_per_trial, int) or gpus_per_trial < 0):
    raise UserError(f'--gpus_per_trial={gpus_per_trial} must be an integer >= 0 (one trial per GPU: 1)')


def _check_reachable(address: str) -> None:
  """Fails fast, in one line, if nothing listens at a HOST:PORT (or ray://HOST:PORT) address."""
  hostport = address.split('://', 1)[-1]
  host, _, port = hostport.rpartition(':')
  if not host or not port.isdigit():
    raise UserError(f'--ray_address={address} is not HOST:PORT (the head node\'s, e.g. 10.0.0.1:6379), '
                    'ray://HOST:10001 or auto')
  try:
    socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
  except OSError as e:
    raise UserError(f'--ray_address={address} cannot be reached ({e}): start the cluster first '
                    '(`ray start --head` on the head node) or leave --ray_address out to start Ray here') from e


def connect(ray, address) -> None:
  """Joins the cluster at `address` ('auto': the one started on this machine), or starts Ray here."""
  if ray.is_initialized():
    return
  if address and address != 'auto':
    _check_reachable(address)
  try:
    # Trials log to their own folders (DIR/trial_NNN); their tqdm bars would drown the driver's.
    ray.init(address=address or None, log_to_driver=False, configure_logging=False,
             **({} if address else {'include_dashboard': False}))
  except ConnectionError as e:
    raise UserError(f'--ray_address={address} cannot be reached ({" ".join(str(e).split())}): start '
                    'the cluster first (`ray start --head`) or leave --ray_address out to start Ray here') from e


def trial_number(name: str) -> int:
  """The trial's number from its Ray name 'trial_NNN'."""
  return int(name.rsplit('_', 1)[-1])


def trial_name(trial) -> str:
  """'trial_NNN' from Ray's experiment tag ('1_factor=…', counting from 1 in creation order)."""
  return f'trial_{int(trial.experiment_tag.split("_", 1)[0]) - 1:03d}'


def halving_settings(config: ml_collections.ConfigDict):
  """(min_epochs, η, rungs) of `search.halving`, or None when it is off.

  The rungs are Ray's ASHA's: min_epochs · η^k below num_epochs (the local sweep's asha.rung_epochs
  leaves out one above num_epochs / η).
  """
  if not config.search.halving:
    return None
  eta = int(config.search.reduction_factor)
  min_epochs = config.search.min_epochs
  if min_epochs is None:
    min_epochs = asha.default_min_epochs(config.num_epochs, eta)
  rungs, epoch = [], min_epochs
  while epoch < config.num_epochs:
    rungs.append(epoch)
    epoch *= eta
  return int(min_epochs), eta, rungs


class TrialFailed(Exception):
  """A trial that failed (diverged, say): Ray records it as errored and TPE as failed."""


def _set_aside_abandoned(trial_dir: str, trial: ml_collections.ConfigDict) -> None:
  """Moves away a trial folder left by a proposal that Ray forgot in a kill, so the new one starts clean."""
  path = os.path.join(trial_dir, workdir_lib.CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  if workdir_lib.config_differences(old, workdir_lib.config_to_json(trial), workdir_lib.RESUMABLE_KEYS):
    k = 0
    while os.path.exists(f'{trial_dir}.abandoned{k}'):
      k += 1
    logging.warning('%s holds an abandoned proposal; moved to %s.abandoned%d', trial_dir, trial_dir, k)
    os.rename(trial_dir, f'{trial_dir}.abandoned{k}')


def _wait_for_a_killed_sweeps_worker(trial_dir: str, seconds: float = 120.0) -> None:
  """Waits up to `seconds` while another process holds `trial_dir`, then lets its 'in use' error through.

  A killed sweep's worker of this trial may still be alive for a moment (Ray
  stops a dead driver's workers shortly after it): a restored trial waits it
  out rather than fail as 'in use'; one held for longer is the user's to see.
  """
  with workdir_lock.hold(trial_dir, wait=seconds):
    pass


def trainable(params: dict, base: ml_collections.ConfigDict, workdir: str, space: str,
              rungs: tuple, all_devices: bool) -> None:
  """One trial in a Ray worker: `train.train_and_evaluate` in DIR/trial_NNN, reporting every epoch to Tune."""
  import jax  # pylint: disable=g-import-not-at-top
  from ray import tune  # pylint: disable=g-import-not-at-top
  from frem_jax import train  # pylint: disable=g-import-not-at-top
  from frem_jax.errors import TrainingDiverged  # pylint: disable=g-import-not-at-top

  # Each trial is a worker process of its own, which cli.begin never ran in: without the cache
  # every trial would compile the same steps again.
  compilation_cache.use_compilation_cache()
  t0 = time.perf_counter()
  name = tune.get_context().get_trial_name()
  trial_dir = os.path.join(workdir, name)
  values = search_space.plain_values(params)
  trial = search_space.trial_config(base, space, values)
  _wait_for_a_killed_sweeps_worker(trial_dir)
  _set_aside_abandoned(trial_dir, trial)
  # Ray makes visible only the GPUs it gave this trial; on CPU a trial is one device.
  devices = jax.local_devices() if all_devices else jax.local_devices()[:1]
  device = f'{socket.gethostname()}/{",".join(str(d) for d in devices)}'
  progress = {'best_epoch': None, 'best': -math.inf, 'rung_scores': []}

  def on_epoch(epoch: int, scalars: dict) -> None:
    best = scalars['val/best_miou']
    if best > progress['best']:
      progress['best'], progress['best_epoch'] = best, epoch
    if epoch in rungs:
      progress['rung_scores'].append(best)
    # Nothing to report before the first validation; the last epoch is reported with the
    # trial's results (ASHA stops a trial at max_t = num_epochs, before it could report them).
    if math.isfinite(best) and epoch < trial.num_epochs:
      tune.report({'epoch': epoch, METRIC: best, 'loss': scalars['train/loss'],
                   'best_epoch': progress['best_epoch'], 'rung_scores': list(progress['rung_scores']),
                   'device': device, 'wall_seconds': time.perf_counter() - t0})

  try:
    results = train.train_and_evaluate(trial, trial_dir, devices=devices, on_epoch=on_epoch)
    search_store.check_scored(results)
  except TrainingDiverged as e:
    raise TrialFailed(search_store.failure_reason(e)) from e
  except UserError:
    raise  # the user's mistake (the data on this node, say): its message is the reason
  except Exception as e:  # pylint: disable=broad-except  # recorded as a failed trial; the sweep goes on
    raise TrialFailed(search_store.failure_reason(e)) from e
  tune.report({'epoch': results['epochs_completed'], METRIC: results['val']['miou'], 'finished': True,
               'best_epoch': results['best_epoch'], 'test_miou': results['test']['miou'],
               'test_iou_per_class': results['test']['iou_per_class'],
               'rung_scores': progress['rung_scores'], 'device': device,
               'wall_seconds': time.perf_counter() - t0})


def _failure_reason(trial) -> str:
  """The one-line reason of an errored trial, from the error file Ray wrote."""
  path = trial.error_file if hasattr(trial, 'error_file') else None
  text = ''
  if path and os.path.exists(path):
    with open(path) as f:
      text = f.read()
  for line in reversed(text.strip().splitlines()):
    if 'TrialFailed: ' in line:
      return line.split('TrialFailed: ', 1)[1].strip()
  lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
  return lines[-1] if lines else 'the trial failed (see its error file in DIR/ray)'


def entry_of(trial, halving: bool) -> dict:
  """A Ray trial as a `trials.json` entry (the local sweep's fields; with halving, epochs and rung_scores)."""
  name = trial_name(trial)
  result = trial.last_result or {}
  entry = {'number': trial_number(name), 'values': search_space.plain_values(trial.config),
           'status': 'running', 'reason': None, 'val_miou': None, 'best_epoch': None,
           'test_miou': None, 'test_iou_per_class': None, 'wall_seconds': result.get('wall_seconds'),
           'device': result.get('device'), 'workdir': name}
  if trial.status == 'ERROR':
    entry.update(status='fail', reason=_failure_reason(trial))
  elif trial.status == 'TERMINATED' and result.get('finished'):
    entry.update(status='ok', val_miou=result[METRIC], best_epoch=result['best_epoch'],
                 test_miou=result['test_miou'], test_iou_per_class=result['test_iou_per_class'])
  elif trial.status == 'TERMINATED':  # stopped by ASHA at a rung: scored by its best mIoU so far
    entry.update(status='stopped', val_miou=result.get(METRIC), best_epoch=result.get('best_epoch'))
  if halving:
    entry.update(epochs=result.get('epoch', 0), rung_scores=list(result.get('rung_scores', [])))
  return entry


def save_record(workdir: str, trials, halving: bool) -> dict:
  """Rewrites DIR/trials.json (and best.json) from Ray's trials; returns the record.

  A trial recorded as settled (ok, fail, stopped) keeps its entry: Ray saves its experiment
  every few seconds, so after a kill it may run a finished trial again (which then only
  re-evaluates its last checkpoint).
  """
  record = search_store.load(workdir)
  settled = {e['number']: e for e in record['trials'] if e['status'] in ('ok', 'fail', 'stopped')}
  entries = []
  for trial in trials:
    entry = entry_of(trial, halving)
    old = settled.get(entry['number'])
    entries.append(old if old is not None and old['values'] == entry['values'] else entry)
  record['trials'] = sorted(entries, key=lambda e: e['number'])
  search_store.save(workdir, record)
  return record


def make_scheduler(config: ml_collections.ConfigDict):
  """Ray's ASHAScheduler for `search.halving` (rungs at min_epochs · η^k epochs), or None."""
  halving = halving_settings(config)
  if halving is None:
    return None
  from ray.tune.schedulers import ASHAScheduler  # pylint: disable=g-import-not-at-top
  return ASHAScheduler(time_attr='epoch', metric=METRIC, mode='max', max_t=config.num_epochs,
                       grace_period=halving[0], reduction_factor=halving[1])


def _make_recorder(tune):
  class Recorder(tune.Callback):
    """Rewrites DIR/trials.json (and best.json) from Ray's trials whenever one starts or ends."""

    def __init__(self, workdir: str, halving: bool):
      self.workdir, self.halving = workdir, halving

    def save(self, trials) -> None:
      save_record(self.workdir, trials, self.halving)

    def on_trial_start(self, iteration, trials, trial, **info):
      self.save(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
      self.save(trials)
      e = entry_of(trial, self.halving)
      logging.info('Trial %d: %s, val mIoU %s', e['number'], e['status'], e['val_miou'])

    def on_trial_error(self, iteration, trials, trial, **info):
      self.save(trials)
      logging.warning('Trial %s failed: %s', trial_name(trial), _failure_reason(trial))

  return Recorder


def _default_concurrency(ray, cpus_per_trial: float, gpus_per_trial: int) -> int:
  """As many trials at once as the cluster has GPUs (or CPU shares) for them, now."""
  resources = ray.cluster_resources()
  if gpus_per_trial:
    return max(1, int(resources.get('GPU', 0) // gpus_per_trial))
  return max(1, int(resources.get('CPU', 1) // cpus_per_trial))


@workdir_lock.holding('workdir', '--workdir')  # the sweep's folder (the driver); each trial locks its own
def run_search(config: ml_collections.ConfigDict, workdir: str, ray_address=None,
               max_concurrent_trials: int = 0, cpus_per_trial: float = 1.0, gpus_per_trial=None) -> dict:
  """Runs (or continues) the sweep of `config.search` on Ray Tune in `workdir`; returns the final record.

  ray_address: None starts Ray on this machine (unless this process already joined one);
  'auto' joins the cluster started on this machine; HOST:PORT the one whose head is there.
  max_concurrent_trials: 0 = as many as fit. gpus_per_trial: None = 1 if the cluster has GPUs.
  """
  check_options(max_concurrent_trials, cpus_per_trial, gpus_per_trial)
  if config.search.population != 1:
    raise UserError(f'search.population={config.search.population} is not supported with --backend=ray: Ray runs '
                    'one trial per worker; use --backend=local for populations (docs/population.md)')
  resolved = search_space.resolve(config)  # a bad setting is named before Ray is needed or loaded
  ray, tune = _import_tune()
  from ray.tune.search.hyperopt import HyperOptSearch  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(workdir)  # Ray's workers start in their own folders
  workdir_lib.check_not_a_file(workdir)
  experiment = os.path.join(workdir, EXPERIMENT)
  trials_path = os.path.join(workdir, search_store.TRIALS_FILE)
  restoring = os.path.isdir(experiment) and tune.Tuner.can_restore(experiment)
  if os.path.exists(trials_path) and not restoring:
    old = search_store.load(workdir)
    if old['trials']:
      raise UserError(f'{trials_path} holds a sweep of the local backend: continue it without '
                      '--backend=ray, or use a new --workdir')
  if restoring:
    old = search_store.load(workdir)
    if old['space']['max_evals'] != resolved['max_evals']:
      raise UserError(f'{trials_path} was started on Ray with search.max_evals='
                      f'{old["space"]["max_evals"]}; Ray cannot change it: continue with that value, or '
                      'use a new --workdir')
  record = search_store.open_record(workdir, config, resolved)
  record['backend'] = 'ray'
  os.makedirs(workdir, exist_ok=True)
  config = datasets.with_data_dir(config, workdir)  # all trials share one prepared copy of the data
  datasets.load_dataset(config, config.dataset.data_dir)  # prepares it once; a UserError stops here
  search_store.save(workdir, record)

  connect(ray, ray_address)
  if gpus_per_trial is None:
    gpus_per_trial = 1 if ray.cluster_resources().get('GPU', 0) > 0 else 0
  halving = halving_settings(config)
  resources = {'cpu': cpus_per_trial, 'gpu': gpus_per_trial}
  fn = tune.with_resources(
      tune.with_parameters(trainable, base=config, workdir=workdir, space=resolved['space'],
                           rungs=tuple(halving[2]) if halving else (), all_devices=gpus_per_trial > 0),
      resources)
  os.environ.setdefault('TUNE_GLOBAL_CHECKPOINT_S', CHECKPOINT_PERIOD_S)
  if restoring:
    logging.info('Restoring the Ray sweep in %s', experiment)
    tuner = tune.Tuner.restore(experiment, trainable=fn, resume_unfinished=True, resume_errored=False)
  else:
    concurrency = max_concurrent_trials or _default_concurrency(ray, cpus_per_trial, gpus_per_trial)
    # metric and mode on the searcher and the scheduler: TuneConfig's do not reach a searcher
    # wrapped in Tune's ConcurrencyLimiter.
    searcher = HyperOptSearch(space=search_space.hyperopt_space(resolved), metric=METRIC, mode='max',
                              points_to_evaluate=None,
                              n_initial_points=resolved['n_startup_jobs'], random_state_seed=resolved['seed'])
    scheduler = make_scheduler(config)
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            num_samples=resolved['max_evals'], max_concurrent_trials=concurrency, reuse_actors=True,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=workdir, verbose=0,
                                  callbacks=[_make_recorder(tune)(workdir, bool(halving))]))
  logging.info('Ray sweep of %d trials in %s (%s per trial)', resolved['max_evals'], workdir, resources)
  grid = tuner.fit()
  record = save_record(workdir, _trials_of(grid), bool(halving))  # in case the last event was missed
  search_plot.plot(record, workdir)
  print(f'Ray experiment: {experiment}', file=sys.stderr)
  return record


def _trials_of(grid) -> list:
  """The Ray Trial objects behind a ResultGrid."""
  return list(grid._experiment_analysis.trials)  # pylint: disable=protected-access
