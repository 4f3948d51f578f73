"""Training and evaluation of U-Net+SE with FREM or SuperVision: `train_and_evaluate(config, workdir)`.

The command line is `python -m frem_jax.train` (train/__main__.py).
"""

import dataclasses
import math
import os
import sys
import time
from typing import Optional

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
from frem_jax import steps
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.build import build_model
from frem_jax.config_validation import validate_config
from frem_jax.errors import TrainingDiverged
from frem_jax.filenames import RESULTS_FILE
from frem_jax.metric_logging import MetricLogger
from frem_jax.model import frem as frem_lib


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
  enhanced in the epoch just trained) and the others (Fig. 9b, 9c).
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
class _Progress:
  """What a checkpoint records besides the state: the last epoch, the time trained, the best mIoU so far."""
  epoch: int = 0
  train_seconds: float = 0.0
  best_miou: float = -math.inf


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
  data = datasets.load_dataset(config, config.dataset.data_dir or datasets.default_data_dir(workdir))
  workdir_lib.record(workdir, config)
  axis_name = parallel.PMAP_AXIS if config.parallelism == 'pmap' else None
  model = build_model(config, data.num_classes, axis_name)
  state = steps.create_train_state(model, randomness.init_key(config.seed),
                                   data.splits['train'].images.shape[1:], config.learning_rate)
  runner = epochs_lib.EpochRunner(
      data.splits['train'], config.batch_size, config.seed, frem_enabled=config.frem.enabled,
      supervision_enabled=config.supervision.enabled, parallelism=config.parallelism,
      data_on_device=config.data_on_device, augment=config.dataset.augment, devices=devices)
  manager = checkpointing.make_manager(workdir)
  logger = MetricLogger(workdir)
  try:
    state, progress = _resume(manager, logger, state, workdir)
    state, progress = _train_epochs(config, data, runner, manager, logger, state, progress, on_epoch)
    best_epoch = manager.best_step()
    best_state, _ = checkpointing.restore(manager, best_epoch, state)
    evaluation = _evaluate_best(config, data, runner, model, best_state)
  finally:
    manager.close()
    logger.close()
  results = _results(config, data, state, best_epoch, progress, evaluation)
  files.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
  return results


def _check(config: ml_collections.ConfigDict, workdir: str, devices) -> list:
  """The devices to train on, after checking the config and the workdir (nothing is touched on error)."""
  validate_config(config)
  devices = list(devices) if devices else parallel.local_devices(config.num_devices)
  parallel.check_divisible(config.batch_size, len(devices))
  parallel.check_divisible(config.eval_batch_size, len(devices), 'eval_batch_size')
  workdir_lib.check(workdir, config)
  return devices


def _resume(manager, logger: MetricLogger, state: steps.TrainState, workdir: str):
  """The latest checkpoint's state and progress, or the fresh state; the metrics log cut to match."""
  progress = _Progress()
  if manager.latest_step() is not None:
    progress.epoch = manager.latest_step()
    state, meta = checkpointing.restore(manager, progress.epoch, state)
    progress.train_seconds, progress.best_miou = meta['train_seconds'], meta['best_val_miou']
    logging.info('Resuming %s from epoch %d.', workdir, progress.epoch)
  logger.truncate_after(progress.epoch)
  return state, progress


def _train_epochs(config, data: input_pipeline.Dataset, runner: epochs_lib.EpochRunner, manager,
                  logger: MetricLogger, state: steps.TrainState, progress: _Progress, on_epoch=None):
  """Trains the remaining epochs: validation, feature statistics, checkpoints and logs after each."""
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, runner.mesh)
  hparams = hyperparams(config)
  train_split = data.splits['train']
  train_state = runner.put(state)
  epochs = tqdm(range(progress.epoch + 1, config.num_epochs + 1), initial=progress.epoch,
                total=config.num_epochs, desc='epochs', unit='epoch', file=sys.stderr)
  for epoch in epochs:
    t0 = time.perf_counter()
    key = randomness.frem_epoch_key(config.seed, epoch, config.frem.mode)
    train_state, loss_sum = runner.run(train_state, epoch, hparams, key)
    loss = float(loss_sum) / input_pipeline.steps_per_epoch(train_split, config.batch_size)
    state = runner.get(train_state)
    if not math.isfinite(loss):
      raise TrainingDiverged(
          f'training diverged: the loss is {loss} in epoch {epoch} (frem.factor={config.frem.factor}, '
          f'learning_rate={config.learning_rate}); nothing of this epoch was saved')
    progress.train_seconds += time.perf_counter() - t0
    scalars = {'train/loss': loss}
    val_miou = None
    if epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs:
      sums = evaluate(eval_fn, state, data.splits['validation'], config.eval_batch_size, hparams, key)
      scalars.update(_validation_scalars(config, data, sums, key))
      val_miou = scalars['val/miou'] if scalars['val/miou'] is not None else 0.0
    improved = val_miou is not None and val_miou > progress.best_miou
    progress.best_miou = max(progress.best_miou, val_miou) if val_miou is not None else progress.best_miou
    progress.epoch = epoch
    if improved or epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs:
      checkpointing.save(manager, epoch, state,
                         {'epoch': epoch, 'train_seconds': progress.train_seconds,
                          'best_val_miou': progress.best_miou}, val_miou)
    logger.write(epoch, scalars)
    if on_epoch is not None:
      on_epoch(epoch, {**scalars, 'val/best_miou': progress.best_miou})
    # This epoch's validation mIoU (n/a if not evaluated) beside the best so far: one value repeated reads as stalled.
    epochs.set_postfix(loss=f'{loss:.4f}', val_miou='n/a' if val_miou is None else f'{val_miou:.4f}',
                       best_val_miou=f'{progress.best_miou:.4f}' if math.isfinite(progress.best_miou) else 'n/a')
  manager.wait_until_finished()
  return state, progress


def _validation_scalars(config, data: input_pipeline.Dataset, sums: dict, key: jax.Array) -> dict:
  """The logged validation mIoU, IoU per class and feature statistics of one epoch."""
  val = metrics.summarize(sums['confusion'], data.class_names)
  scalars = {'val/miou': val['miou']}
  scalars.update({f'val/iou/{k}': v for k, v in val['iou_per_class'].items()})
  enhanced = (np.asarray(frem_lib.selected_channels(key, config.model.features[-1], config.frem.num_selected))
              if config.frem.enabled else None)
  scalars.update(feature_stats(sums, enhanced))
  return scalars


def _evaluate_best(config, data: input_pipeline.Dataset, runner: epochs_lib.EpochRunner, model,
                   best_state: steps.TrainState) -> dict:
  """The best checkpoint on validation and test; with FREM at test (Table 1) and whole sections if configured."""
  hparams = hyperparams(config)

  def summarize(fn, split, frem_key):
    sums = evaluate(fn, best_state, data.splits[split], config.eval_batch_size, hparams, frem_key)
    return metrics.summarize(sums['confusion'], data.class_names)

  # FREM's key at test (used only with eval.frem_at_test): epoch 0's, which training never uses.
  test_key = randomness.frem_epoch_key(config.seed, 0, config.frem.mode)
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, runner.mesh)
  out = {'val': summarize(eval_fn, 'validation', test_key), 'test': summarize(eval_fn, 'test', test_key)}
  if config.eval.frem_at_test:
    fn = epochs_lib.jit_eval_step(data.num_classes, runner.mesh, frem_at_test=True)
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
             progress: _Progress, evaluation: dict) -> dict:
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
      'train_seconds': progress.train_seconds,
      'normalization': {'mean': data.mean, 'std': data.std},
  }
  for key in ('frem_at_test', 'test_full_sections'):
    if evaluation.get(key) is not None:
      results[key] = evaluation[key]
  return results


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
