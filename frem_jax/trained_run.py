"""A training run loaded back: the best checkpoint of a finished run for inference, or any kept checkpoint to measure."""

import dataclasses
import json
import os
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np

from frem_jax import checkpointing
from frem_jax import datasets
from frem_jax import randomness
from frem_jax import steps
from frem_jax import workdir as workdir_lib
from frem_jax.build import build_model
from frem_jax.errors import UserError
from frem_jax.filenames import CHECKPOINT_DIR
from frem_jax.filenames import CONFIG_FILE
from frem_jax.filenames import RESULTS_FILE


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """The best checkpoint of a run, ready to segment raw images.

  Attributes:
    config: the run's config, rebuilt from `config.json` (`half_precision` as
      loaded: the run's own or the override).
    class_names: the K class names, in class-index order.
    model: the `UNetSE` built from `config`.
    variables: {'params', 'batch_stats'} of the best checkpoint.
    normalization: {'mean': [C], 'std': [C]} of the training split (from `results.json`).
    image_size: the tile size the model was trained on (`dataset.image_size`).
    in_channels: C, the image channels the model expects.
  """
  config: ml_collections.ConfigDict
  class_names: tuple
  model: Any
  variables: dict
  normalization: dict
  image_size: int
  in_channels: int
  _apply: Callable = dataclasses.field(repr=False, compare=False)

  @property
  def num_classes(self) -> int:
    """K, the number of classes the model predicts."""
    return len(self.class_names)

  def logits(self, images: np.ndarray) -> np.ndarray:
    """Class logits float32 [N, H, W, K] of raw images [N, H, W, C] (intensities as read from file).

    Images are normalised as in training (per channel, by the training split's
    mean and std) and FREM is off. H and W must be divisible by 2^(stages - 1).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != self.in_channels:
      raise UserError(f'images of shape {images.shape} given; the model expects [N, H, W, '
                      f'{self.in_channels}] ({self.in_channels}-channel images)')
    mean = np.asarray(self.normalization['mean'], np.float32)
    std = np.asarray(self.normalization['std'], np.float32)
    normalised = ((images.astype(np.float32) - mean) / std).astype(np.float32)
    return np.asarray(self._apply(self.variables, normalised), np.float32)


def load(workdir: str, half_precision: Optional[bool] = None) -> TrainedRun:
  """The best checkpoint of the finished run in `workdir`; UserError (one line) if there is none.

  `half_precision` computes in bfloat16 (True) or float32 (False) whatever the
  run trained in (its parameters are float32 either way); None keeps the run's own.
  """
  config_path = os.path.join(workdir, CONFIG_FILE)
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  no_checkpoint = (f'{workdir} has no checkpoint: train it first with python -m frem_jax.train '
                   f'--config=CONFIG --workdir={workdir}')
  if not os.path.isfile(config_path) or not os.path.isdir(checkpoints):
    raise UserError(no_checkpoint)
  config = workdir_lib.read_config(workdir)
  if half_precision is not None:
    config.half_precision = bool(half_precision)
  results = _read_results(workdir)
  mean, std = results['normalization']['mean'], results['normalization']['std']
  mean, std = np.atleast_1d(mean).tolist(), np.atleast_1d(std).tolist()
  class_names = tuple(results.get('class_names') or datasets.class_names(config.dataset))
  model = build_model(config, len(class_names))
  image_size = int(config.dataset.image_size)
  variables = _restore_best(workdir, config, model, (image_size, image_size, len(mean)), no_checkpoint)
  apply = steps.jit_logits(model)
  return TrainedRun(config, class_names, model, variables, {'mean': mean, 'std': std},
                    image_size, len(mean), apply)


def restore_epoch(workdir: str, which: str = 'best'):
  """The run in `workdir` at checkpoint `which` ('best', 'latest' or an epoch it keeps), with its data.

  For measuring a run (launch/feature_magnitudes.py, launch/frem_gap.py) rather than segmenting
  with it: the data is loaded as training loaded it. UserError (one line) for an epoch not kept, or
  for a checkpoint that does not fit the run's config.

  Returns:
    (config, data, model, state, epoch): the run's config, its `input_pipeline.Dataset`, the model,
    the `steps.TrainState` of that checkpoint and its epoch.
  """
  config = workdir_lib.read_config(workdir)  # upgraded: runs saved before model.layers load too
  data = datasets.load_dataset(config, datasets.data_dir_of(config, workdir))
  model = build_model(config, data.num_classes)
  state = _template(config, model, data.splits['validation'].images.shape[1:])
  manager = checkpointing.make_manager(workdir)
  try:
    kept = manager.all_steps()
    epoch = {'best': manager.best_step, 'latest': manager.latest_step}.get(which, lambda: which)()
    if str(epoch) not in {str(e) for e in kept}:
      raise UserError(f'epoch {which}: {workdir} has no such checkpoint; a run keeps its best and its '
                      f'latest epoch ({", ".join(map(str, sorted(kept))) or "none yet"})')
    _check_stored_shapes(state, checkpointing.stored_shapes(workdir, int(epoch)), workdir, int(epoch))
    state, _ = checkpointing.restore(manager, int(epoch), state)
  finally:
    manager.close()
  return config, data, model, state, int(epoch)


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is unreadable ({e}); restore it or train the run again') from e


def _read_results(workdir: str) -> dict:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    raise UserError(f'{workdir} has no {RESULTS_FILE}: its training has not finished (the '
                    'normalisation is recorded at the end); finish it by running the same '
                    'python -m frem_jax.train command again')
  results = _read_json(path)
  if 'normalization' not in results:
    raise UserError(f'{path} has no "normalization"; train the run again with this version')
  return results


def _restore_best(workdir: str, config: ml_collections.ConfigDict, model, image_shape: tuple,
                  no_checkpoint: str) -> dict:
  template = _template(config, model, image_shape)
  manager = checkpointing.make_manager(workdir)
  try:
    step = manager.best_step()
    step = manager.latest_step() if step is None else step
    if step is None:
      raise UserError(no_checkpoint)
    # Compare shapes before reading: a failed restore leaves orbax's reads running at exit.
    _check_stored_shapes(template, checkpointing.stored_shapes(workdir, step), workdir, step)
    try:
      state, _ = checkpointing.restore(manager, step, template)
    except (ValueError, TypeError, KeyError) as e:
      raise UserError(
          f'the checkpoint of epoch {step} in {workdir} was made with a different model config '
          'than its config.json (the parameter trees differ); use the config.json it was trained with') from e
  finally:
    manager.close()
  return {'params': state.params, 'batch_stats': state.batch_stats}


def _template(config: ml_collections.ConfigDict, model, image_shape: tuple) -> steps.TrainState:
  """The run's `TrainState` as shapes on the first local device, to restore a checkpoint into."""
  # Shapes only: evaluating the initialiser abstractly compiles nothing (seconds per load).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      steps.train_state_shapes(model, randomness.run_key(config.seed), image_shape, config.learning_rate))


def _check_stored_shapes(template, stored: dict, workdir: str, step: int) -> None:
  """UserError naming the first parameter or statistic whose shape differs between model and checkpoint."""
  def flat(tree):
    return dict(jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))[0])

  for section in ('params', 'batch_stats'):
    want = flat(jax.tree.map(lambda x: tuple(x.shape), getattr(template, section)))
    got = flat(stored[section])
    for path in list(want) + [p for p in got if p not in want]:
      if want.get(path) != got.get(path):
        name = '/'.join([section] + [str(getattr(k, 'key', k)) for k in path])
        raise UserError(
            f'the checkpoint of epoch {step} in {workdir} was made with a different model config than '
            f'its config.json ({name} is {got.get(path)} in the checkpoint, {want.get(path)} in the '
            'model); use the config.json it was trained with')
