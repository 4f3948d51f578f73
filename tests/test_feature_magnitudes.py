"""launch/feature_magnitudes.py and launch/frem_gap.py: measurements from a run's checkpoint, equal to what training logged."""

import importlib.util
import json
import os
import shutil

import pytest

from frem_jax import train
from frem_jax.errors import UserError
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'launch', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


feature_magnitudes = load_script('feature_magnitudes')
frem_gap = load_script('frem_gap')


@pytest.fixture(scope='module')
def frem_run(tmp_path_factory):
  """A 1-epoch tiny FREM run, tested with and without the enhancement at test (Table 1)."""
  workdir = str(tmp_path_factory.mktemp('frem_run') / 'run')
  results = train.train_and_evaluate(tiny_config(num_epochs=1, **{'eval.frem_at_test': True}), workdir)
  return workdir, results


def test_the_logged_points_are_measured_again_from_a_run_saved_with_the_old_keys(frem_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(frem_run[0], workdir)
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
    with pytest.raises(UserError, match=f'epoch {epoch}: .* has no such checkpoint; a run keeps its best and its latest epoch \\(1\\)'):
      feature_magnitudes.measure(workdir, epoch)


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
  assert feature_magnitudes.main([str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'config.json is unreadable' in err and len(err.strip().splitlines()) == 1


def test_the_gap_measures_the_run_as_it_was_tested_and_as_it_was_trained(frem_run):
  workdir, results = frem_run
  gap = frem_gap.measure(workdir, 'best', passes=0)['val_miou']
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = json.loads(f.readline())
  assert gap['frem_off'] == pytest.approx(logged['val/miou'], abs=1e-12) == pytest.approx(results['val']['miou'], abs=1e-12)
  assert gap['frem_on_test_channels'] == pytest.approx(results['frem_at_test']['val']['miou'], abs=1e-12)
  assert gap['frem_off_restats'] == gap['frem_off']  # no pass: the statistics are the trained ones
  assert gap['frem_on_own_channels'] != gap['frem_on_test_channels']  # epoch 1's channels are not epoch 0's
  restated = frem_gap.measure(workdir, 'best', passes=2)['val_miou']
  assert {k: restated[k] for k in gap if k != 'frem_off_restats'} == {k: gap[k] for k in gap if k != 'frem_off_restats'}
  assert restated['frem_off_restats'] != gap['frem_off']


@pytest.mark.parametrize('passes', ['-1', 'x'])
def test_bad_passes_are_one_line(passes, tmp_path, capsys):
  assert frem_gap.main([str(tmp_path), f'--passes={passes}']) == 1
  err = capsys.readouterr().err
  assert err == f'error: --passes={passes} must be an integer >= 0\n'
