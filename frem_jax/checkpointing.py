"""Orbax checkpoints of a run: the latest epoch (for resuming) and the best by validation mIoU."""

import os
from typing import Optional

import jax
import orbax.checkpoint as ocp

from frem_jax.steps import TrainState

METRIC = 'val_miou'


def make_manager(workdir: str) -> ocp.CheckpointManager:
  """A manager under `workdir/checkpoints` that keeps the latest and the best checkpoint."""
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=1),
      ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[METRIC], reverse=False, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=lambda m: m[METRIC], best_mode='max', create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                               options=options, item_names=('state', 'meta'))


def _state_tree(state: TrainState) -> dict:
  return {'step': state.step, 'params': state.params, 'batch_stats': state.batch_stats,
          'opt_state': state.opt_state}


def save(manager: ocp.CheckpointManager, epoch: int, state: TrainState, meta: dict,
         val_miou: Optional[float]) -> None:
  """Saves `state` and the JSON `meta` as checkpoint `epoch` (epochs completed)."""
  metrics = None if val_miou is None else {METRIC: float(val_miou)}
  manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(_state_tree(state)),
                                              meta=ocp.args.JsonSave(meta)),
               metrics=metrics)


def restore(manager: ocp.CheckpointManager, epoch: int, template: TrainState) -> tuple[TrainState, dict]:
  """Restores checkpoint `epoch` into a state shaped like `template`, and its meta."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(template))
  restored = manager.restore(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return template.replace(**restored['state']), dict(restored['meta'])
