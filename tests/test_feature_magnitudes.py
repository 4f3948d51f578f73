"""launch/feature_magnitudes.py: Fig. 3's measurement points from a checkpoint, equal to what training logged."""

import importlib.util
import json
import os

import pytest

from frem_jax import train
from frem_jax.errors import UserError
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    'feature_magnitudes', os.path.join(ROOT, 'launch', 'feature_magnitudes.py'))
feature_magnitudes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(feature_magnitudes)


def test_the_logged_points_are_measured_again_from_a_run_saved_with_the_old_keys(tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(num_epochs=1), workdir)
  # The run as saved before model.layers existed: the script must read it like train does.
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    saved = json.load(f)
  del saved['model']['layers']
  saved['model'].update(conv_impl='auto', upconv_impl='matmul')
  with open(path, 'w') as f:
    json.dump(saved, f)
  result = feature_magnitudes.measure(workdir, 'best')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = json.loads(f.readline())
  means = result['mean_activation']
  assert result['epoch'] == 1
  assert means['deepest/se'] == pytest.approx(logged['features/deepest_mean'], rel=1e-5)
  assert means['skip/se'] == pytest.approx(logged['features/skip_mean'], rel=1e-5)
  assert means['deepest/relu'] > means['deepest/se'] > 0  # the SE block scales by sigmoids < 1
  for epoch in ('7', 'x'):  # a run keeps its best and latest checkpoints only
    with pytest.raises(UserError, match=f'--epoch={epoch}: .* has no such checkpoint; a run keeps its best and its latest epoch \\(1\\)'):
      feature_magnitudes.measure(workdir, epoch)


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
  assert feature_magnitudes.main([str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'config.json is unreadable' in err and len(err.strip().splitlines()) == 1
