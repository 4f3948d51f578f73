"""Numbers of a finished run recomputed from its checkpoints, outside the training loop."""

import jax
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


def checkpoint_state(workdir: str, config, epoch: int, train_batch_stats: bool = False) -> steps.TrainState:
  """The whole train state of checkpoint `epoch` (with the training statistics: `checkpointing.restore`'s `train_batch_stats`)."""
  data = datasets.load_dataset(config, config.dataset.data_dir)
  template = steps.create_train_state(build.build_model(config, data.num_classes), randomness.run_key(config.seed),
                                      data.splits['train'].images.shape[1:], config.learning_rate)
  manager = checkpointing.make_manager(workdir)
  try:
    return checkpointing.restore(manager, epoch, template, train_batch_stats)[0]
  finally:
    manager.close()


def assert_trees_equal(a, b) -> None:
  """Two trees of arrays equal in structure and bit for bit."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def iou(masks: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[list, float]:
  """IoU per class (None where a class is in neither) and their mean, counted in numpy."""
  masks, predictions = np.asarray(masks).ravel(), np.asarray(predictions).ravel()
  ious = []
  for k in range(num_classes):
    union = np.sum((masks == k) | (predictions == k))
    ious.append(None if union == 0 else float(np.sum((masks == k) & (predictions == k)) / union))
  return ious, float(np.mean([v for v in ious if v is not None]))
