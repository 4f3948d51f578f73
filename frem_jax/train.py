"""Training and evaluation of U-Net+SE with FREM or SuperVision.

Usage: python -m frem_jax.train --config=configs/demo.py --workdir=runs/demo
"""

import dataclasses
import functools
import math
import os
import sys
import time
from typing import Any, Optional

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from frem_jax import checkpointing
from frem_jax import cli
from frem_jax import datasets
from frem_jax import epochs as epochs_lib
from frem_jax import files
from frem_jax import frem as frem_lib
from frem_jax import input_pipeline
from frem_jax import metrics
from frem_jax import parallel
from frem_jax import section_eval
from frem_jax import steps
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.config_validation import validate_config
from frem_jax.errors import TrainingDiverged
from frem_jax.metric_logging import MetricLogger
from frem_jax.unet import UNetSE

RESULTS_FILE = 'results.json'
# Independent PRNG streams derived from the run's seed.
_INIT_STREAM, _FREM_STREAM = 0, 1
# 'rbg' keys: XLA:CPU compiles the threefry initialisers of the whole network
# about 3x slower (7.4 s vs 2.3 s for a tiny U-Net), and every run pays it.
PRNG_IMPL = 'rbg'


def run_key(seed: int) -> jax.Array:
  """The root PRNG key of a run; every other key is folded in from it."""
  return jax.random.key(seed, impl=PRNG_IMPL)


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                axis_name: Optional[str] = None) -> UNetSE:
  """The U-Net+SE described by `config.model` (with the SuperVision head if enabled)."""
  m = config.model
  return _model(
      num_classes=num_classes, features=tuple(m.features), norm=m.norm,
      se_reduction=m.se_reduction, supervision=config.supervision.enabled,
      norm_momentum=m.norm_momentum, norm_epsilon=m.norm_epsilon, renorm_r_max=m.renorm_r_max,
      renorm_d_max=m.renorm_d_max, renorm_warmup_steps=m.renorm_warmup_steps, axis_name=axis_name,
      upconv_impl=m.upconv_impl, conv_impl=m.get('conv_impl', 'auto'))  # runs saved before conv_impl existed


@functools.lru_cache(maxsize=None)
def _model(**attributes) -> UNetSE:
  # One instance per architecture, so that runs in one process (a sweep) share the
  # train state's static apply_fn and with it the compiled train step.
  return UNetSE(**attributes)


def frem_epoch_key(seed: int, epoch: int, mode: str) -> jax.Array:
  """FREM's key for `epoch`: new channels every epoch ('random'), or the same all run ('fixed')."""
  base = jax.random.fold_in(run_key(seed), _FREM_STREAM)
  return base if mode == 'fixed' else jax.random.fold_in(base, epoch)


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
  validate_config(config)
  devices = list(devices) if devices else parallel.local_devices(config.num_devices)
  parallel.check_divisible(config.batch_size, len(devices))
  parallel.check_divisible(config.eval_batch_size, len(devices), 'eval_batch_size')
  workdir_lib.check(workdir, config)
  data = input_pipeline.load_dataset(config, config.dataset.data_dir or datasets.default_data_dir(workdir))
  workdir_lib.record(workdir, config)
  train_split = data.splits['train']
  axis_name = parallel.PMAP_AXIS if config.parallelism == 'pmap' else None
  model = build_model(config, data.num_classes, axis_name)
  state = steps.create_train_state(
      model, jax.random.fold_in(run_key(config.seed), _INIT_STREAM),
      train_split.images.shape[1:], config.learning_rate)
  runner = epochs_lib.EpochRunner(
      train_split, config.batch_size, config.seed, frem_enabled=config.frem.enabled,
      supervision_enabled=config.supervision.enabled, parallelism=config.parallelism,
      data_on_device=config.data_on_device, augment=config.dataset.augment, devices=devices)
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, runner.mesh)
  hparams = hyperparams(config)
  run = open_run(workdir, state)
  state = run.state
  train_state = runner.put(state)

  try:
    epochs = tqdm(range(run.start_epoch + 1, config.num_epochs + 1), initial=run.start_epoch,
                  total=config.num_epochs, desc='epochs', unit='epoch', file=sys.stderr)
    for epoch in epochs:
      t0 = time.perf_counter()
      key = frem_epoch_key(config.seed, epoch, config.frem.mode)
      train_state, loss_sum = runner.run(train_state, epoch, hparams, key)
      loss = float(loss_sum) / input_pipeline.steps_per_epoch(train_split, config.batch_size)
      state = runner.get(train_state)
      check_finite(config, epoch, loss)
      seconds = time.perf_counter() - t0
      sums = (evaluate(eval_fn, state, data.splits['validation'], config.eval_batch_size, hparams, key)
              if evaluates(config, epoch) else None)
      scalars = end_epoch(config, data, run, epoch, state, loss, seconds, sums, key)
      val_miou, best_miou = scalars.get('val/miou'), run.best_miou
      if on_epoch is not None:
        on_epoch(epoch, {**scalars, 'val/best_miou': best_miou})
      # This epoch's validation mIoU (n/a if not evaluated) beside the best so far: one value repeated reads as stalled.
      epochs.set_postfix(loss=f'{loss:.4f}', val_miou='n/a' if val_miou is None else f'{val_miou:.4f}',
                         best_val_miou=f'{best_miou:.4f}' if math.isfinite(best_miou) else 'n/a')
    return finish_run(config, workdir, data, model, runner.mesh, run, state, hparams)
  finally:
    run.close()


@dataclasses.dataclass
class RunLog:
  """What a run keeps between epochs: its checkpoints, metric log, training time and best validation mIoU."""
  manager: Any
  logger: MetricLogger
  state: steps.TrainState  # as restored (or as given, for a new run)
  start_epoch: int = 0
  train_seconds: float = 0.0
  best_miou: float = -math.inf

  def close(self) -> None:
    self.manager.close()
    self.logger.close()


def open_run(workdir: str, state: steps.TrainState) -> RunLog:
  """Opens `workdir`'s checkpoints and metric log; resumes from its latest checkpoint if it has one."""
  run = RunLog(checkpointing.make_manager(workdir), MetricLogger(workdir), state)
  if run.manager.latest_step() is not None:
    run.start_epoch = run.manager.latest_step()
    run.state, meta = checkpointing.restore(run.manager, run.start_epoch, state)
    run.train_seconds, run.best_miou = meta['train_seconds'], meta['best_val_miou']
    logging.info('Resuming %s from epoch %d.', workdir, run.start_epoch)
  run.logger.truncate_after(run.start_epoch)
  return run


def check_finite(config: ml_collections.ConfigDict, epoch: int, loss: float) -> None:
  """TrainingDiverged if the epoch's loss is not finite."""
  if not math.isfinite(loss):
    raise TrainingDiverged(
        f'training diverged: the loss is {loss} in epoch {epoch} (frem.factor={config.frem.factor}, '
        f'learning_rate={config.learning_rate}); nothing of this epoch was saved')


def evaluates(config: ml_collections.ConfigDict, epoch: int) -> bool:
  """Whether `epoch` ends with a validation pass."""
  return epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs


def end_epoch(config: ml_collections.ConfigDict, data: input_pipeline.Dataset, run: RunLog, epoch: int,
              state: steps.TrainState, loss: float, seconds: float, sums: Optional[dict],
              key: jax.Array) -> dict:
  """Logs a trained epoch (validation metrics from `sums`, an `evaluate` pass, or None) and checkpoints it if due.

  Returns:
    The scalars logged for the epoch ('val/miou' only if it was evaluated).
  """
  run.train_seconds += seconds
  scalars = {'train/loss': loss}
  val_miou = None
  if sums is not None:
    val = metrics.summarize(sums['confusion'], data.class_names)
    val_miou = val['miou'] if val['miou'] is not None else 0.0
    scalars['val/miou'] = val['miou']
    scalars.update({f'val/iou/{k}': v for k, v in val['iou_per_class'].items()})
    enhanced = (np.asarray(frem_lib.selected_channels(key, config.model.features[-1], config.frem.num_selected))
                if config.frem.enabled else None)
    scalars.update(feature_stats(sums, enhanced))
  improved = val_miou is not None and val_miou > run.best_miou
  run.best_miou = max(run.best_miou, val_miou) if val_miou is not None else run.best_miou
  if improved or epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs:
    # Only a new best carries the metric: orbax's best checkpoint is the latest of tied metrics,
    # and ours is the earliest epoch with the highest validation mIoU.
    checkpointing.save(run.manager, epoch, state,
                       {'epoch': epoch, 'train_seconds': run.train_seconds,
                        'best_val_miou': run.best_miou}, val_miou if improved else None)
  run.logger.write(epoch, scalars)
  return scalars


def finish_run(config: ml_collections.ConfigDict, workdir: str, data: input_pipeline.Dataset,
               model: UNetSE, mesh, run: RunLog, state: steps.TrainState,
               hparams: steps.Hyperparams) -> dict:
  """Evaluates the best checkpoint of a finished run on validation and test; writes and returns results.json."""
  run.manager.wait_until_finished()
  eval_fn = epochs_lib.jit_eval_step(data.num_classes, mesh)
  best_epoch = run.manager.best_step()
  best_state, _ = checkpointing.restore(run.manager, best_epoch, state)
  def summarize(fn, split, frem_key):
    sums = evaluate(fn, best_state, data.splits[split], config.eval_batch_size, hparams, frem_key)
    return metrics.summarize(sums['confusion'], data.class_names)

  # FREM's key at test (used only with eval.frem_at_test): epoch 0's, which training never uses.
  test_key = frem_epoch_key(config.seed, 0, config.frem.mode)
  val, test = summarize(eval_fn, 'validation', test_key), summarize(eval_fn, 'test', test_key)
  frem_at_test = None
  if config.eval.frem_at_test:
    fn = epochs_lib.jit_eval_step(data.num_classes, mesh, frem_at_test=True)
    frem_at_test = {'val': summarize(fn, 'validation', test_key), 'test': summarize(fn, 'test', test_key),
                    'key': f'frem_epoch_key(seed={config.seed}, epoch=0, mode={config.frem.mode!r})'}
  full_sections = None
  if config.dataset.name == 'drosophila_vnc':
    apply = steps.jit_logits(model)
    variables = {'params': best_state.params, 'batch_stats': best_state.batch_stats}
    full_sections = section_eval.evaluate_full_sections(
        lambda x: apply(variables, x), data.splits['test'], config.dataset.image_size,
        config.eval.full_section_overlap, data.class_names)

  inference_params = {k: v for k, v in state.params.items() if k != 'supervision_head'}
  results = {
      'config': workdir_lib.config_to_json(config),
      'class_names': list(data.class_names),
      'best_epoch': int(best_epoch),
      'epochs_completed': int(config.num_epochs),
      'val': val,
      'test': test,
      'num_params': _count_params(state.params),
      'num_params_inference': _count_params(inference_params),
      'train_seconds': run.train_seconds,
      'normalization': {'mean': data.mean, 'std': data.std},
  }
  if frem_at_test is not None:
    results['frem_at_test'] = frem_at_test
  if full_sections is not None:
    results['test_full_sections'] = full_sections
  files.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
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


FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    results = train_and_evaluate(cli.config_from_flag('config'), FLAGS.workdir)
  print(format_results(results))
  print(f'results: {os.path.join(FLAGS.workdir, RESULTS_FILE)}')


if __name__ == '__main__':
  cli.define_config_flag()
  flags.DEFINE_string('workdir', None, 'Folder for checkpoints, logs and results.json.')
  flags.mark_flag_as_required('workdir')
  app.run(main, flags_parser=cli.parse_flags)
