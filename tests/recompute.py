"""Numbers of a finished run recomputed from its checkpoints, outside the training loop."""

import numpy as np

from frem_jax import build
from frem_jax import checkpointing
from frem_jax import datasets
from frem_jax import randomness
from frem_jax import steps


def kept_epochs(workdir: str) -> list:
  manager = checkpointing.make_manager(workdir)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def restore(workdir: str, config, epoch: int):
  """(model, {'params', 'batch_stats'}) of checkpoint `epoch` of a run trained with `config`."""
  data = datasets.load_dataset(config, config.dataset.data_dir)
  model = build.build_model(config, data.num_classes)
  template = steps.create_train_state(model, randomness.run_key(config.seed), data.splits['train'].images.shape[1:],
                                      config.learning_rate)
  manager = checkpointing.make_manager(workdir)
  try:
    state, _ = checkpointing.restore(manager, epoch, template)
  finally:
    manager.close()
  return model, {'params': state.params, 'batch_stats': state.batch_stats}


def iou(masks: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[list, float]:
  """IoU per class (None where a class is in neither) and their mean, counted in numpy."""
  masks, predictions = np.asarray(masks).ravel(), np.asarray(predictions).ravel()
  ious = []
  for k in range(num_classes):
    union = np.sum((masks == k) | (predictions == k))
    ious.append(None if union == 0 else float(np.sum((masks == k) & (predictions == k)) / union))
  return ious, float(np.mean([v for v in ious if v is not None]))
