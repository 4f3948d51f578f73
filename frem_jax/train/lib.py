"""Training and evaluation of U-Net+SE with FREM or SuperVision: `train_and_evaluate(config, workdir)`.

`train_population(configs, workdirs)` trains K such runs together, one vmapped
step for all (train/population.py; the sweep's `search.population`).

The command line is `python -m frem_jax.train` (train/__main__.py); the package
`frem_jax.train` names this module's functions (lazy.py).
"""

import copy
import dataclasses
import math
import os
import sys
import time
from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from frem_jax import checkpointing
from frem_jax import datasets
from frem_jax import epochs as epochs_lib
from frem_jax import files
from frem_jax import input_pipeline
from frem_jax import metrics
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import section_eval
from frem_jax import statistics
from frem_jax import steps
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.build import build_model
from frem_jax.build import precision
from frem_jax.build import PRECISIONS
from frem_jax.config_validation import validate_config
from frem_jax.errors import TrainingDiverged
from frem_jax.errors import UserError
from frem_jax.filenames import RESULTS_FILE
from frem_jax.metric_logging import MetricLogger
from frem_jax.model import unet
from frem_jax.train import population


def hyperparams(config: ml_collections.ConfigDict) -> steps.Hyperparams:
  """B (`frem.num_selected`), X (`frem.factor`) and λ (`supervision.weight`) as runtime inputs."""
  return steps.make_hyperparams(config.frem.num_selected, config.frem.factor,
                                config.supervision.weight)


def evaluate(eval_fn, state: steps.TrainState, split: input_pipeline.Split, batch_size: int,
             hparams: steps.Hyperparams, frem_key: jax.Array) -> dict:
  """The sums of `steps.eval_sums_step` over a whole split, on the host (confusion matrix as int64)."""
  total = None
  for batch in input_pipeline.eval_batches(split, batch_size):
    sums = eval_fn(state, batch, hparams, frem_key)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  total = {k: np.asarray(v, np.float64) for k, v in jax.device_get(total).items()}
  total['confusion'] = total['confusion'].astype(np.int64)
  return total


def feature_stats(sums: dict, enhanced: Optional[np.ndarray]) -> dict:
  """The paper's Fig. 3 and Fig. 9 numbers from an evaluation pass (activations after ReLU, before FREM).

  features/deepest_mean and features/skip_mean: the mean activation of the
  deepest stage and of the skip connection it is concatenated with (Fig. 3);
  features/all_sum: the deepest stage's activations summed over pixels and
  channels, per image (Fig. 9a); with FREM, features/enhanced_sum and
  features/other_sum split that sum into the `enhanced` channels (those FREM
  enhanced in the epoch just trained) and the others (Fig. 9b, 9c). With
  `enhanced` None (no FREM, or `frem.redraw='step'`, where an epoch has no one
  set of enhanced channels) the split is left out.
  """
  channel_sum = sums['deepest_channel_sum']
  n = max(sums['num_images'], 1.0)
  stats = {'features/deepest_mean': float(channel_sum.sum() / max(sums['deepest_positions'] * len(channel_sum), 1.0)),
           'features/skip_mean': float(sums['skip_sum'] / max(sums['skip_values'], 1.0)),
           'features/all_sum': float(channel_sum.sum() / n)}
  if enhanced is not None:
    stats['features/enhanced_sum'] = float(channel_sum[enhanced].sum() / n)
    stats['features/other_sum'] = float(channel_sum[~enhanced].sum() / n)
  return stats


def _count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


@dataclasses.dataclass
class RunLog:
  """What a run keeps between epochs: its checkpoints, metric log, training time and best validation mIoU.

  reestimate_seconds: the time spent re-estimating statistics (`eval.reestimate_statistics`).
  """
  manager: Any
  logger: MetricLogger
  state: steps.TrainState  # as restored (or as given, for a new run), with the training statistics
  start_epoch: int = 0
  train_seconds: float = 0.0
  best_miou: float = -math.inf
  reestimate_seconds: float = 0.0

  def close(self) -> None:
    self.manager.close()
    self.logger.close()


@workdir_lock.holding('workdir', '--workdir')  # before anything is written; released on exit or death
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None,
                       on_epoch=None) -> dict:
  """Trains (or resumes) a run in `workdir`, evaluates its best checkpoint on test, writes results.json.

  `devices` pins the run to these devices (the search runs one trial per
  device); by default `config.num_devices` local devices are used.
  `on_epoch(epoch, scalars)`, if given, is called after every epoch is logged, with that epoch's
  scalars plus 'val/best_miou' (the best validation mIoU so far); the Ray sweep reports them to Tune.

  Returns:
    The results dictionary written to `workdir/results.json`.
  """
  devices = _check(config, workdir, devices)
  data = datasets.load_dataset(config, datasets.data_dir_of(config, workdir))
  workdir_lib.record(workdir, config)
  axis_name = parallel.PMAP_AXIS if config.parallelism == 'pmap' else None
  model = build_model(config, data.num_classes, axis_name)
  state = steps.create_train_state(model, randomness.init_key(config.seed),
                                   data.splits['train'].images.shape[1:], config.learning_rate)
  runner = epochs_lib.EpochRunner(
      data.splits['train'], config.batch_size, config.seed, frem_enabled=config.frem.enabled,
      supervision_enabled=config.supervision.enabled, parallelism=config.parallelism,
      data_on_device=config.data_on_device, augment=config.dataset.augment, devices=devices,
      frem_redraw=config.frem.redraw)
  run = open_run(workdir, state, config.eval.reestimate_statistics)
  try:
    state = _train_epochs(config, data, runner, run, on_epoch)
    return finish_run(config, workdir, data, model, runner.mesh, run, state, hyperparams(config))
  finally:
    run.close()


def _check(config: ml_collections.ConfigDict, workdir: str, devices) -> list:
  """The devices to train on, after checking the config and the workdir (nothing is touched on error)."""
  validate_config(config)
  devices = list(devices) if devices else parallel.local_devices(config.num_devices)
  parallel.check_divisible(config.batch_size, len(devices))
  parallel.check_divisible(config.eval_batch_size, len(devices), 'eval_batch_size')
  workdir_lib.check(workdir, config)
  check_precision(workdir, config)
  return devices


def check_precision(workdir: str, config: ml_collections.ConfigDict) -> None:
  """UserError if `workdir` holds checkpoints computed in another precision than `config` computes in here.

  `half_precision` means bfloat16 convolutions on the CPU wing with
  oneDNN's bfloat16, bfloat16 throughout elsewhere (`build.precision`): a run
  moved to another machine or backend, or to other `model.layers`, would go
  on in another arithmetic than it began in, and no longer equal a straight run.
  Checkpoints saved before the precision was recorded are not checked.
  """
  saved = (checkpointing.latest_meta(workdir) or {}).get('precision')
  here = precision(config)
  if saved is None or saved == here:
    return
  # model.layers may change on resume: where another value computes as the run began, name it.
  fixes = [layers for layers in ('auto', 'cpu', 'flax') if layers != config.model.layers
           and precision(_with_layers(config, layers)) == saved]
  remedy = (f'resume it with --config.model.layers={fixes[0]}' if fixes else
            'resume it where it computes the same (docs/config.md, half_precision)')
  raise UserError(f'--workdir={workdir} was trained in {PRECISIONS.get(saved, saved)}, and here '
                  f'half_precision={config.half_precision} computes {PRECISIONS[here]}; {remedy}, '
                  'or start a new --workdir')


def _with_layers(config: ml_collections.ConfigDict, layers: str) -> ml_collections.ConfigDict:
  other = copy.deepcopy(config)
  other.model.layers = layers
  return other


def open_run(workdir: str, state: steps.TrainState, reestimated: bool = False) -> RunLog:
  """Opens `workdir`'s checkpoints and metric log; resumes from its latest checkpoint if it has one.

  With `reestimated` (`eval.reestimate_statistics`: the checkpoints' batch_stats
  are re-estimated ones) the run resumes from the training statistics saved
  beside them, as a straight run goes on. The metrics log is cut to match the
  checkpoint resumed from.
  """
  run = RunLog(checkpointing.make_manager(workdir), MetricLogger(workdir), state)
  if run.manager.latest_step() is not None:
    run.start_epoch = run.manager.latest_step()
    run.state, meta = checkpointing.restore(run.manager, run.start_epoch, state, train_batch_stats=reestimated)
    run.train_seconds, run.best_miou = meta['train_seconds'], meta['best_val_miou']
    run.reestimate_seconds = meta.get('reestimate_seconds', 0.0)
    logging.info('Resuming %s from epoch %d.', workdir, run.start_epoch)
  run.logger.truncate_after(run.start_epoch)
  return run


def _train_epochs(config, data: input_pipeline.Dataset, runner: epochs_lib.EpochRunner, run: RunLog,
                  on_epoch=None) -> steps.TrainState:
  """Trains the remaining epochs: validation, feature statistics, checkpoints and logs after each."""
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, runner.mesh)
  reestimate = reestimator(config, data, runner.mesh) if config.eval.reestimate_statistics else None
  hparams = hyperparams(config)
  train_split = data.splits['train']
  state = run.state
  train_state = runner.put(state)
  epochs = tqdm(range(run.start_epoch + 1, config.num_epochs + 1), initial=run.start_epoch,
                total=config.num_epochs, desc='epochs', unit='epoch', file=sys.stderr)
  for epoch in epochs:
    t0 = time.perf_counter()
    key = randomness.frem_epoch_key(config.seed, epoch, config.frem.mode)
    train_state, loss_sum = runner.run(train_state, epoch, hparams, key)
    loss = float(loss_sum) / input_pipeline.steps_per_epoch(train_split, config.batch_size)
    state = runner.get(train_state)
    check_finite(config, epoch, loss)
    seconds = time.perf_counter() - t0
    sums, eval_stats = None, None
    if evaluates(config, epoch):
      eval_state = state
      if reestimate is not None:
        eval_stats = _timed_reestimate(reestimate, state, epoch, [run])
        eval_state = state.replace(batch_stats=eval_stats)
      sums = evaluate(eval_fn, eval_state, data.splits['validation'], config.eval_batch_size, hparams, key)
    scalars = end_epoch(config, data, run, epoch, state, loss, seconds, sums, key, eval_stats)
    val_miou = scalars.get('val/miou')
    if on_epoch is not None:
      on_epoch(epoch, {**scalars, 'val/best_miou': run.best_miou})
    # This epoch's validation mIoU (n/a if not evaluated) beside the best so far: one value repeated reads as stalled.
    epochs.set_postfix(loss=f'{loss:.4f}', val_miou='n/a' if val_miou is None else f'{val_miou:.4f}',
                       best_val_miou=f'{run.best_miou:.4f}' if math.isfinite(run.best_miou) else 'n/a')
  return state


def check_finite(config: ml_collections.ConfigDict, epoch: int, loss: float) -> None:
  """TrainingDiverged if the epoch's loss is not finite."""
  if not math.isfinite(loss):
    raise TrainingDiverged(
        f'training diverged: the loss is {loss} in epoch {epoch} (frem.factor={config.frem.factor}, '
        f'learning_rate={config.learning_rate}); nothing of this epoch was saved')


def evaluates(config: ml_collections.ConfigDict, epoch: int) -> bool:
  """Whether `epoch` ends with a validation pass."""
  return epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs


def reestimator(config: ml_collections.ConfigDict, data: input_pipeline.Dataset, mesh=None):
  """fn(params, batch_stats, epoch) -> the statistics `eval.reestimate_statistics` evaluates with.

  Precise FREM-off statistics (frem_jax/statistics.py) over one pass of the
  whole training split, in the batches of `batch_size` and the order of the
  epoch just trained (without augmentation), so every training image counts
  once: Drosophila's 224 training tiles are 56 batches of 4 (PreciseBN's
  default is 200 batches). Compiled once per process and model. `mesh` None:
  the stacked members of a population on one device.
  """
  twin = build_model(statistics.moments_config(config), data.num_classes)
  accumulate = (statistics.jit_population_accumulate(twin) if mesh is None
                else statistics.jit_accumulate(twin, mesh))
  split = data.splits['train']

  def reestimate(params, batch_stats, epoch: int):
    order = epochs_lib.index_batches(len(split), config.batch_size, config.seed, epoch)
    return statistics.reestimate(accumulate, params, batch_stats, split.images, order)

  return reestimate


def _timed_reestimate(reestimate, state: steps.TrainState, epoch: int, runs: Sequence[RunLog]):
  """`reestimate`'s statistics of `state`; its time is added to each of `runs` (a population's members share it)."""
  t0 = time.perf_counter()
  stats = jax.block_until_ready(reestimate(state.params, state.batch_stats, epoch))
  for run in runs:
    run.reestimate_seconds += time.perf_counter() - t0
  return stats


def end_epoch(config: ml_collections.ConfigDict, data: input_pipeline.Dataset, run: RunLog, epoch: int,
              state: steps.TrainState, loss: float, seconds: float, sums: Optional[dict],
              key: jax.Array, eval_batch_stats=None) -> dict:
  """Logs a trained epoch (validation metrics from `sums`, an `evaluate` pass, or None) and checkpoints it if due.

  `state` holds the training statistics; `eval_batch_stats`, if given, are the
  re-estimated ones `sums` was computed with (`eval.reestimate_statistics`).
  With that option a checkpoint's batch_stats are the statistics its epoch was
  evaluated with, the training ones for an epoch without evaluation, and the
  training ones are saved beside them (checkpointing.py).

  Returns:
    The scalars logged for the epoch ('val/miou' only if it was evaluated).
  """
  run.train_seconds += seconds
  scalars = {'train/loss': loss}
  val_miou = None
  if sums is not None:
    scalars.update(_validation_scalars(config, data, sums, key))
    val_miou = scalars['val/miou'] if scalars['val/miou'] is not None else 0.0
  improved = val_miou is not None and val_miou > run.best_miou
  run.best_miou = max(run.best_miou, val_miou) if val_miou is not None else run.best_miou
  # The line goes first: a run killed between the two resumes from its previous checkpoint and
  # truncates the log there, whereas a checkpoint without its line would leave a gap in the log.
  run.logger.write(epoch, scalars)
  if improved or epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs:
    # Only a new best carries the metric: orbax's best checkpoint is the latest of tied metrics,
    # and ours is the earliest epoch with the highest validation mIoU.
    meta = {'epoch': epoch, 'train_seconds': run.train_seconds, 'best_val_miou': run.best_miou,
            'precision': precision(config)}
    saved, train_batch_stats = state, None
    if config.eval.reestimate_statistics:
      meta['reestimate_seconds'] = run.reestimate_seconds
      meta['batch_stats'] = 'training' if eval_batch_stats is None else 're-estimated'
      train_batch_stats = state.batch_stats
      if eval_batch_stats is not None:
        saved = state.replace(batch_stats=eval_batch_stats)
    checkpointing.save(run.manager, epoch, saved, meta, val_miou if improved else None, train_batch_stats)
  return scalars


def _validation_scalars(config, data: input_pipeline.Dataset, sums: dict, key: jax.Array) -> dict:
  """The logged validation mIoU, IoU per class and feature statistics of one epoch."""
  val = metrics.summarize(sums['confusion'], data.class_names)
  scalars = {'val/miou': val['miou']}
  scalars.update({f'val/iou/{k}': v for k, v in val['iou_per_class'].items()})
  # Under frem.redraw='step' every step enhanced other channels: no one set to split by.
  enhanced = (np.asarray(unet.frem_channels(key, config.model.features[-1], config.frem.num_selected))
              if config.frem.enabled and config.frem.redraw == 'epoch' else None)
  scalars.update(feature_stats(sums, enhanced))
  return scalars


def finish_run(config: ml_collections.ConfigDict, workdir: str, data: input_pipeline.Dataset, model,
               mesh, run: RunLog, state: steps.TrainState, hparams: steps.Hyperparams) -> dict:
  """Evaluates the best checkpoint of a finished run on validation and test; writes and returns results.json.

  With `eval.reestimate_statistics` the checkpoint holds the statistics its
  validation used (re-estimated), so test is evaluated with them too.
  """
  run.manager.wait_until_finished()
  best_epoch = run.manager.best_step()
  best_state, _ = checkpointing.restore(run.manager, best_epoch, state)
  evaluation = _evaluate_best(config, data, mesh, model, best_state, hparams)
  results = _results(config, data, state, best_epoch, run, evaluation)
  files.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
  return results


def _evaluate_best(config, data: input_pipeline.Dataset, mesh, model, best_state: steps.TrainState,
                   hparams: steps.Hyperparams) -> dict:
  """The best checkpoint on validation and test; with FREM at test (Table 1) and whole sections if configured."""

  def summarize(fn, split, frem_key):
    sums = evaluate(fn, best_state, data.splits[split], config.eval_batch_size, hparams, frem_key)
    return metrics.summarize(sums['confusion'], data.class_names)

  # FREM's key at test (used only with eval.frem_at_test): epoch 0's, which training never uses.
  test_key = randomness.frem_epoch_key(config.seed, 0, config.frem.mode)
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, mesh)
  out = {'val': summarize(eval_fn, 'validation', test_key), 'test': summarize(eval_fn, 'test', test_key)}
  if config.eval.frem_at_test:
    fn = epochs_lib.jit_eval_step(data.num_classes, mesh, frem_at_test=True)
    out['frem_at_test'] = {
        'val': summarize(fn, 'validation', test_key), 'test': summarize(fn, 'test', test_key),
        'key': f'frem_epoch_key(seed={config.seed}, epoch=0, mode={config.frem.mode!r})'}
  if config.dataset.name == 'drosophila_vnc':  # its test sections are also scored whole
    apply = steps.jit_logits(model)
    variables = {'params': best_state.params, 'batch_stats': best_state.batch_stats}
    out['test_full_sections'] = section_eval.evaluate_full_sections(
        lambda x: apply(variables, x), data.splits['test'], config.dataset.image_size,
        config.eval.full_section_overlap, data.class_names)
  return out


def _results(config, data: input_pipeline.Dataset, state: steps.TrainState, best_epoch: int,
             run: RunLog, evaluation: dict) -> dict:
  """The content of results.json (docs/outputs.md)."""
  inference_params = {k: v for k, v in state.params.items() if k != 'supervision_head'}
  results = {
      'config': workdir_lib.config_to_json(config),
      'class_names': list(data.class_names),
      'best_epoch': int(best_epoch),
      'epochs_completed': int(config.num_epochs),
      'val': evaluation['val'],
      'test': evaluation['test'],
      'num_params': _count_params(state.params),
      'num_params_inference': _count_params(inference_params),
      'train_seconds': run.train_seconds,
      'normalization': {'mean': data.mean, 'std': data.std},
  }
  if config.eval.reestimate_statistics:
    results['reestimate_seconds'] = run.reestimate_seconds
  for key in ('frem_at_test', 'test_full_sections'):
    if evaluation.get(key) is not None:
      results[key] = evaluation[key]
  return results


@workdir_lock.holding('workdirs', '--workdir')  # each member's folder, as train_and_evaluate holds its one
def train_population(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                     device=None) -> list:
  """Trains (or resumes) the runs of `configs` in `workdirs` together on `device`, K runs in one vmapped step.

  The configs may differ in B, X and λ only (train/population.py); each
  member's folder is as `train_and_evaluate` writes it, and resumable by it.

  Members resumed from different epochs (a population killed between two
  members' checkpoints) are trained as one population per starting epoch.
  A member whose loss diverges leaves the population; the others go on.

  Returns:
    Per member, its results dictionary (as written to its results.json), or
    the TrainingDiverged error that stopped it.
  """
  if len(configs) != len(workdirs):
    raise ValueError(f'{len(configs)} configs but {len(workdirs)} workdirs')
  for config in configs:
    validate_config(config)
  population.check_members(configs)
  for config, workdir in zip(configs, workdirs):
    workdir_lib.check(workdir, config)
    check_precision(workdir, config)
  config = configs[0]
  device = device or parallel.local_devices(1)[0]
  mesh = parallel.make_mesh([device])
  data = datasets.load_dataset(config, datasets.data_dir_of(config, workdirs[0]))
  for c, workdir in zip(configs, workdirs):
    workdir_lib.record(workdir, c)
  model = build_model(config, data.num_classes)
  init = steps.create_train_state(model, randomness.init_key(config.seed),
                                  data.splits['train'].images.shape[1:], config.learning_rate)
  runs = []
  try:
    for workdir in workdirs:
      runs.append(open_run(workdir, init, config.eval.reestimate_statistics))
    outcomes = [None] * len(configs)
    for start in sorted({run.start_epoch for run in runs}):
      group = [i for i, run in enumerate(runs) if run.start_epoch == start]
      failures = _train_together([configs[i] for i in group], [runs[i] for i in group], data, start, device)
      for j, error in failures.items():
        outcomes[group[j]] = error
    for i, (c, workdir, run) in enumerate(zip(configs, workdirs, runs)):
      if outcomes[i] is None:
        outcomes[i] = finish_run(c, workdir, data, model, mesh, run, run.state, hyperparams(c))
    return outcomes
  finally:
    for run in runs:
      run.close()


def _train_together(configs, runs, data: input_pipeline.Dataset, start_epoch: int, device) -> dict:
  """Trains members that all resume at `start_epoch` to the end; returns {member: TrainingDiverged}."""
  config = configs[0]
  split = data.splits['train']
  hparams = jax.device_put(population.stack([hyperparams(c) for c in configs]), device)
  states = jax.device_put(population.stack([run.state for run in runs]), device)
  step = population.jit_train_step(config.frem.enabled, config.supervision.enabled, config.model.features[-1],
                                   config.frem.redraw)
  eval_fn = population.jit_eval_step(data.num_classes)
  reestimate = reestimator(config, data) if config.eval.reestimate_statistics else None
  on_device = config.data_on_device and not config.dataset.augment
  if on_device:
    images, masks = jax.device_put(split.images, device), jax.device_put(split.masks, device)
  alive, failures = list(range(len(configs))), {}
  bar = tqdm(range(start_epoch + 1, config.num_epochs + 1), initial=start_epoch, total=config.num_epochs,
             desc=f'epochs ({len(configs)} trials)', unit='epoch', file=sys.stderr)
  for epoch in bar:
    t0 = time.perf_counter()
    keys = jax.device_put(jnp.stack([randomness.frem_epoch_key(c.seed, epoch, c.frem.mode) for c in configs]), device)
    order = epochs_lib.index_batches(len(split), config.batch_size, config.seed, epoch)
    loss_sum = 0.0
    if on_device:
      for idx in jax.device_put(order.astype(np.int32), device):
        states, m = step(states, images, masks, idx, hparams, keys)
        loss_sum = loss_sum + m['loss']
    else:  # as `epochs.EpochRunner` feeds a single run from the host, augmented there
      rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch, 1]))
      for idx in order:
        batch = {'image': split.images[idx], 'mask': split.masks[idx]}
        if config.dataset.augment:
          batch = input_pipeline.augment_batch(batch, rng)
        states, m = step(states, batch['image'], batch['mask'], np.arange(len(idx)), hparams, keys)
        loss_sum = loss_sum + m['loss']
    losses = np.asarray(loss_sum) / input_pipeline.steps_per_epoch(split, config.batch_size)
    seconds = time.perf_counter() - t0  # the population's time: every member is charged all of it
    sums, eval_stats = None, None
    if evaluates(config, epoch):
      eval_states = states
      if reestimate is not None:
        eval_stats = _timed_reestimate(reestimate, states, epoch, [runs[j] for j in alive])
        eval_states = states.replace(batch_stats=eval_stats)
      sums = evaluate(eval_fn, eval_states, data.splits['validation'], config.eval_batch_size, hparams, keys)
    for j in list(alive):
      try:
        check_finite(configs[j], epoch, float(losses[j]))
      except TrainingDiverged as e:
        failures[j] = e
        alive.remove(j)
        continue
      member_sums = None if sums is None else {k: v[j] for k, v in sums.items()}
      end_epoch(configs[j], data, runs[j], epoch, population.member(states, j), float(losses[j]), seconds,
                member_sums, keys[j], None if eval_stats is None else population.member(eval_stats, j))
    if not alive:
      break
    bar.set_postfix(best_val_miou=' '.join(f'{runs[j].best_miou:.3f}' for j in alive))
  bar.close()
  for j in alive:
    runs[j].state = population.member(states, j)
  return failures


def format_results(results: dict) -> str:
  """A short human-readable table of the test IoU per class and the mIoU."""
  lines = [f'best epoch {results["best_epoch"]}: val mIoU {_pct(results["val"]["miou"])}, '
           f'test mIoU {_pct(results["test"]["miou"])}',
           'test IoU per class:']
  for name, value in results['test']['iou_per_class'].items():
    lines.append(f'  {name:<14} {_pct(value)}')
  return '\n'.join(lines)


def _pct(value) -> str:
  return 'n/a' if value is None else f'{100 * value:6.2f} %'
