"""Per-epoch metrics to TensorBoard event files and a JSONL log in the workdir."""

import json
import os

import tensorboardX

from frem_jax import files
from frem_jax.filenames import METRICS_FILE


class MetricLogger:
  """Writes scalars to `workdir/tensorboard` and one JSON object per epoch to `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self._path = os.path.join(workdir, METRICS_FILE)
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def truncate_after(self, epoch: int) -> None:
    """Drops log lines of epochs after `epoch`, which a resumed run will redo, and a line torn by a kill."""
    if not os.path.exists(self._path):
      return
    with open(self._path) as f:
      lines = [l for l in f if _epoch(l) is not None and _epoch(l) <= epoch]
    files.write_text_atomic(self._path, ''.join(lines))

  def write(self, epoch: int, scalars: dict) -> None:
    """Logs `scalars` (name -> number or None) for `epoch`."""
    with open(self._path, 'a') as f:
      f.write(json.dumps({'epoch': epoch, **scalars}) + '\n')
    for name, value in scalars.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tb.add_scalar(name, value, epoch)
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def _epoch(line: str):
  """The epoch of a whole log line; None for a blank or torn one."""
  try:
    return json.loads(line).get('epoch', 0)
  except ValueError:
    return None
