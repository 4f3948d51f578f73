"""Orbax checkpoints of a run: the latest epoch (for resuming) and the best by validation mIoU.

A checkpoint holds the items 'state' (step, params, batch_stats, opt_state) and
'meta' (JSON). With `eval.reestimate_statistics` the 'state' item's
batch_stats are the statistics the epoch was evaluated with (re-estimated,
frem_jax/statistics.py), so every reader of a checkpoint uses them with nothing
to set, and a third item, 'train_batch_stats', holds the training's own running
statistics, from which a resumed run goes on.
"""

import logging
import os
import threading
from typing import Optional

import jax
import orbax.checkpoint as ocp

from frem_jax.filenames import CHECKPOINT_DIR
from frem_jax.steps import TrainState

METRIC = 'val_miou'
TRAIN_BATCH_STATS = 'train_batch_stats'  # the item of the training statistics (module docstring)
# Orbax's asynchronous saves of two managers in one process (search trials running side by side in
# threads) were seen to lose a checkpoint's metadata file; saves are therefore one at a time.
_SAVE_LOCK = threading.Lock()


class _QuietWithoutNewBest(logging.Filter):
  """Drops orbax's warning on a save without metrics: by design only a new best carries one (`save`)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return 'Requested `tracked_metric`; did not provide metrics' not in str(record.msg)


logging.getLogger('absl').addFilter(_QuietWithoutNewBest())  # orbax logs through absl


def make_manager(workdir: str) -> ocp.CheckpointManager:
  """A manager under `workdir/checkpoints` that keeps the latest and the best checkpoint."""
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=1),
      ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[METRIC], reverse=False, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  # Synchronous saves: `save` waits for each anyway, and with async saves orbax counts that wait
  # against the next save and warns "Waiting for previous save to complete took N seconds"
  # on every slow disk, though nothing waits there.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=lambda m: m[METRIC], best_mode='max', create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
                               options=options, item_names=('state', 'meta', TRAIN_BATCH_STATS))


def _state_tree(state: TrainState) -> dict:
  return {'step': state.step, 'params': state.params, 'batch_stats': state.batch_stats,
          'opt_state': state.opt_state}


def save(manager: ocp.CheckpointManager, epoch: int, state: TrainState, meta: dict,
         val_miou: Optional[float], train_batch_stats=None) -> None:
  """Saves `state` and the JSON `meta` as checkpoint `epoch` (epochs completed).

  `train_batch_stats`, if given, is saved as the item TRAIN_BATCH_STATS beside
  them (the training statistics, where `state` holds re-estimated ones).
  """
  metrics = None if val_miou is None else {METRIC: float(val_miou)}
  items = {'state': ocp.args.StandardSave(_state_tree(state)), 'meta': ocp.args.JsonSave(meta)}
  if train_batch_stats is not None:
    items[TRAIN_BATCH_STATS] = ocp.args.StandardSave(train_batch_stats)
  with _SAVE_LOCK:
    manager.save(epoch, args=ocp.args.Composite(**items), metrics=metrics)
    manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, epoch: int, template: TrainState,
            train_batch_stats: bool = False) -> tuple[TrainState, dict]:
  """Restores checkpoint `epoch` into a state shaped like `template`, and its meta.

  With `train_batch_stats` (resuming a run with `eval.reestimate_statistics`)
  the state's batch_stats are the item TRAIN_BATCH_STATS, the training's own.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(template))
  items = {'state': ocp.args.StandardRestore(abstract), 'meta': ocp.args.JsonRestore()}
  if train_batch_stats:
    items[TRAIN_BATCH_STATS] = ocp.args.StandardRestore(abstract['batch_stats'])
  restored = manager.restore(epoch, args=ocp.args.Composite(**items))
  state = template.replace(**restored['state'])
  if train_batch_stats:
    state = state.replace(batch_stats=restored[TRAIN_BATCH_STATS])
  return state, dict(restored['meta'])


def latest_meta(workdir: str) -> Optional[dict]:
  """The JSON meta of `workdir`'s latest checkpoint (nothing else read), or None if it has none."""
  folder = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  if not os.path.isdir(folder):
    return None
  manager = ocp.CheckpointManager(folder, item_handlers={'meta': ocp.JsonCheckpointHandler()})
  try:
    epoch = manager.latest_step()
    if epoch is None:
      return None
    return dict(manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta'])
  finally:
    manager.close()


def stored_shapes(workdir: str, epoch: int) -> dict:
  """{'params': …, 'batch_stats': …} as trees of shapes, from checkpoint `epoch`'s metadata (no arrays read)."""
  manager = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
      item_handlers={'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler(),
                     TRAIN_BATCH_STATS: ocp.StandardCheckpointHandler()})
  try:
    metadata = manager.item_metadata(epoch)['state']
  finally:
    manager.close()
  tree = getattr(metadata, 'tree', metadata)
  return {k: jax.tree.map(lambda m: tuple(m.shape), tree[k]) for k in ('params', 'batch_stats')}
