"""The metric log of a run that is killed and resumed: no epoch lost, none twice."""

import json

import ml_collections
import pytest

from frem_jax import train
from frem_jax.metric_logging import MetricLogger


def epochs_logged(workdir):
  return [json.loads(l)['epoch'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_a_resume_drops_the_epochs_it_redoes_and_a_torn_last_line(tmp_path):
  logger = MetricLogger(str(tmp_path))
  for epoch in (1, 2, 3):
    logger.write(epoch, {'train/loss': 1.0 / epoch})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"epoch": 4, "train/lo')  # killed in the middle of a write
  logger.truncate_after(2)
  logger.close()
  assert epochs_logged(tmp_path) == [1, 2]
  assert json.loads((tmp_path / 'metrics.jsonl').read_text().splitlines()[1])['train/loss'] == 0.5


def test_an_epoch_is_logged_before_its_checkpoint(tmp_path, monkeypatch):
  # Killed while saving epoch 2: the resumed run starts from epoch 1's checkpoint and truncates the
  # log there, so the line must already be written; a checkpoint without its line is a lost epoch.
  def killed(*args, **kwargs):
    assert epochs_logged(tmp_path) == [2]
    raise KeyboardInterrupt

  monkeypatch.setattr(train.checkpointing, 'save', killed)
  config = ml_collections.ConfigDict({'checkpoint_every_epochs': 1, 'num_epochs': 3, 'half_precision': False,
                                    'eval': {'reestimate_statistics': False}})
  run = train.RunLog(manager=None, logger=MetricLogger(str(tmp_path)), state=None, start_epoch=1)
  with pytest.raises(KeyboardInterrupt):
    train.end_epoch(config, None, run, 2, None, 0.25, 10.0, None, None)
  run.logger.close()
  assert epochs_logged(tmp_path) == [2]
