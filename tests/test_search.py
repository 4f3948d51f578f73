"""The TPE search: a tiny sweep end to end, compile once, resume after SIGKILL, failures, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from frem_jax import epochs
from frem_jax import parallel
from frem_jax import search
from frem_jax.errors import UserError
from frem_jax.search import space as search_space
from frem_jax.search import store as search_store
from tests.tiny import DATA_DIR
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def sweep_config(max_evals=3, **overrides):
  return tiny_config(**{'num_epochs': 2, 'search.max_evals': max_evals, **overrides})


def read_json(path):
  with open(path) as f:
    return json.load(f)


def run_cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'frem_jax.search', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_tiny_sweep_writes_trials_best_and_figure_and_compiles_once(tmp_path):
  # Widths no other test uses, so this sweep's compilation is its own.
  config = sweep_config(**{'model.features': (4, 8, 12)})
  train_fn = epochs.jit_train_step_on_device(True, False, parallel.make_mesh(jax.local_devices()[:1]))
  before = train_fn._cache_size()
  search.run_search(config, str(tmp_path))
  assert train_fn._cache_size() - before == 1

  record = read_json(tmp_path / 'trials.json')
  trials = record['trials']
  assert [t['number'] for t in trials] == [0, 1, 2]
  assert record['space']['ranges'] == {'num_selected': [1, 12], 'factor': [1.0, 1000.0]}
  for t in trials:
    assert t['status'] == 'ok' and t['reason'] is None
    b, x = t['values']['num_selected'], t['values']['factor']
    assert isinstance(b, int) and 1 <= b <= 12
    assert isinstance(x, float) and 1.0 <= x <= 1000.0
    # The recorded numbers are the trial's own run: its config and results.json.
    run = read_json(tmp_path / t['workdir'] / 'results.json')
    trial_config = read_json(tmp_path / t['workdir'] / 'config.json')
    assert trial_config['frem']['num_selected'] == b and trial_config['frem']['factor'] == x
    assert t['val_miou'] == run['val']['miou'] and 0.0 < t['val_miou'] < 1.0
    assert t['test_miou'] == run['test']['miou']
    assert t['test_iou_per_class'] == run['test']['iou_per_class']
    assert t['best_epoch'] in (1, 2) and t['wall_seconds'] > 0
  assert len({(t['values']['num_selected'], t['values']['factor']) for t in trials}) == 3
  best = read_json(tmp_path / 'best.json')
  assert best['val_miou'] == max(t['val_miou'] for t in trials)
  assert best == next(t for t in trials if t['number'] == best['number'])
  with open(tmp_path / 'search.png', 'rb') as f:
    assert f.read(8) == PNG_MAGIC

  # Running again with the same max_evals trains nothing more.
  search.run_search(config, str(tmp_path))
  assert read_json(tmp_path / 'trials.json')['trials'] == trials

  # --plot_only redraws the figure from trials.json alone.
  os.remove(tmp_path / 'search.png')
  proc = run_cli('--plot_only', f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / 'search.png', 'rb') as f:
    assert f.read(8) == PNG_MAGIC


def test_lambda_sweep_trains_supervision_without_frem(tmp_path):
  config = sweep_config(max_evals=2, **{'search.space': 'supervision', 'num_epochs': 1})
  record = search.run_search(config, str(tmp_path))
  assert record['space']['ranges'] == {'weight': [0.0, 1.0]}
  for t in record['trials']:
    assert t['status'] == 'ok'
    trial_config = read_json(tmp_path / t['workdir'] / 'config.json')
    assert not trial_config['frem']['enabled'] and trial_config['supervision']['enabled']
    assert trial_config['supervision']['weight'] == t['values']['weight']
  assert os.path.exists(tmp_path / 'search.png')


def test_diverging_trials_are_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
  # X near float32's maximum overflows the loss.
  config = sweep_config(max_evals=2, num_epochs=1, **{'search.factor_range': (1e37, 3e38)})
  record = search.run_search(config, str(tmp_path))
  assert [t['status'] for t in record['trials']] == ['fail', 'fail']
  for t in record['trials']:
    assert t['reason'].startswith('TrainingDiverged: training diverged: the loss is nan in epoch 1')
    assert t['val_miou'] is None
  assert not os.path.exists(tmp_path / 'best.json')
  assert os.path.exists(tmp_path / 'search.png')


def test_trials_rebuilt_from_json_give_tpe_the_same_history(tmp_path):
  config = sweep_config(max_evals=2, num_epochs=1)
  record = search.run_search(config, str(tmp_path))
  resolved = search_space.resolve(config)
  from hyperopt import base  # pylint: disable=g-import-not-at-top
  domain = base.Domain(lambda _: 0.0, search_space.hyperopt_space(resolved))
  trials = search_store.hyperopt_trials(read_json(tmp_path / 'trials.json'), domain)
  assert trials.losses() == [-t['val_miou'] for t in record['trials']]
  assert [d['misc']['vals']['num_selected'][0] for d in trials.trials] == [
      t['values']['num_selected'] for t in record['trials']]


SWEEP_CONFIG_FILE = """
from tests.tiny import tiny_config

def get_config():
  config = tiny_config(num_epochs=3, **{{'dataset.data_dir': {data_dir!r}}})
  config.search.max_evals = 3
  config.search.n_startup_jobs = 1  # TPE models the results from the second trial on
  return config
"""


def kill_when(proc, ready, timeout=300):
  """SIGKILLs `proc` as soon as `ready()` holds (polled); returns whether it did before `proc` ended."""
  deadline = time.time() + timeout
  caught = False
  try:
    while time.time() < deadline and proc.poll() is None:
      if ready():
        caught = True
        break
      time.sleep(0.02)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  return caught


def test_sweep_killed_mid_trial_resumes_from_its_checkpoint_to_the_uninterrupted_results(tmp_path):
  config_file = tmp_path / 'sweep_config.py'
  config_file.write_text(SWEEP_CONFIG_FILE.format(data_dir=DATA_DIR))
  workdir = tmp_path / 'sweep'
  args = [sys.executable, '-m', 'frem_jax.search', f'--config={config_file}', f'--workdir={workdir}']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  trial = workdir / 'trial_001'
  # Killed while the second trial trains, after its first epoch is checkpointed (orbax renames a
  # finished checkpoint to its epoch number).
  caught = kill_when(proc, lambda: os.path.isdir(trial / 'checkpoints' / '1'))
  assert caught and not os.path.exists(trial / 'results.json'), 'the sweep was not caught mid-trial'
  trials = read_json(workdir / 'trials.json')['trials']
  assert [t['status'] for t in trials] == ['ok', 'running']

  resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  assert f'Resuming {trial} from epoch ' in resumed.stderr  # from its own checkpoint, not from scratch
  final = read_json(workdir / 'trials.json')['trials']
  assert [t['number'] for t in final] == [0, 1, 2]
  assert [t['status'] for t in final] == ['ok', 'ok', 'ok']
  assert final[0] == trials[0]  # finished trials are not re-run
  assert final[1]['values'] == trials[1]['values']  # the cut-off trial is re-run as proposed
  assert sorted(p for p in os.listdir(workdir) if p.startswith('trial_')) == [
      'trial_000', 'trial_001', 'trial_002']
  assert 'best trial' in resumed.stdout

  # The same sweep without the kill: TPE proposes the same values from the same scores.
  config = tiny_config(num_epochs=3)
  config.search.max_evals, config.search.n_startup_jobs = 3, 1
  straight = search.run_search(config, str(tmp_path / 'straight'))['trials']
  fields = ('number', 'values', 'val_miou', 'test_miou', 'test_iou_per_class', 'best_epoch')
  assert [{k: t[k] for k in fields} for t in final] == [{k: t[k] for k in fields} for t in straight]
  assert len({t['val_miou'] for t in final}) == 3  # the scores TPE modelled were not all alike


def test_trials_run_side_by_side_one_per_device(tmp_path):
  config_file = tmp_path / 'sweep_config.py'
  config_file.write_text(SWEEP_CONFIG_FILE.format(data_dir=DATA_DIR))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  proc = run_cli(f'--config={config_file}', f'--workdir={tmp_path / "sweep"}',
                 '--config.num_epochs=1', '--config.search.max_evals=2', env=env)
  assert proc.returncode == 0, proc.stderr
  trials = read_json(tmp_path / 'sweep' / 'trials.json')['trials']
  assert [t['status'] for t in trials] == ['ok', 'ok']
  assert sorted(t['device'] for t in trials) == ['cpu:0', 'cpu:1']


@pytest.mark.parametrize('overrides,message', [
    ({'search.num_selected_range': (5, 3)},
     'search.num_selected_range (B)=(5, 3) must satisfy 1 <= lo <= hi <= 16'),
    ({'search.num_selected_range': (1, 17)},
     'search.num_selected_range (B)=(1, 17) must satisfy 1 <= lo <= hi <= 16, the channels of the deepest stage'),
    ({'search.num_selected_range': (0, 8)}, 'search.num_selected_range (B)=(0, 8) must satisfy 1 <= lo'),
    ({'search.factor_range': (0.0, 10.0)}, 'search.factor_range (X)=(0.0, 10.0) must satisfy 0 < lo <= hi'),
    ({'search.factor_range': (-5.0, 10.0)}, 'search.factor_range (X)=(-5.0, 10.0) must satisfy 0 < lo'),
    ({'search.factor_range': (100.0, 10.0)}, 'search.factor_range (X)=(100.0, 10.0) must satisfy 0 < lo <= hi'),
    ({'search.space': 'supervision', 'search.weight_range': (0.0, 1.5)},
     'search.weight_range (λ)=(0.0, 1.5) must satisfy 0 <= lo <= hi <= 1'),
    ({'search.space': 'supervision', 'search.weight_range': (-0.1, 0.5)},
     'search.weight_range (λ)=(-0.1, 0.5) must satisfy 0 <= lo'),
    ({'search.space': 'supervision', 'search.weight_range': (0.6, 0.5)},
     'search.weight_range (λ)=(0.6, 0.5) must satisfy 0 <= lo <= hi <= 1'),
    ({'search.max_evals': 0}, 'search.max_evals=0 must be >= 1'),
    ({'search.space': 'dropout'}, "search.space='dropout' must be one of ('frem', 'supervision')"),
])
def test_bad_search_settings_are_refused_before_anything_is_written(overrides, message, tmp_path):
  config = sweep_config(**overrides)
  with pytest.raises(UserError) as e:
    search.run_search(config, str(tmp_path / 'sweep'))
  assert message in str(e.value)
  assert not os.path.exists(tmp_path / 'sweep')


@pytest.fixture(scope='module')
def finished_sweep(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('finished')
  search.run_search(sweep_config(max_evals=1, num_epochs=1), str(workdir))
  return workdir


def file_bytes(path):
  with open(path, 'rb') as f:
    return f.read()


@pytest.mark.parametrize('overrides,message', [
    ({'learning_rate': 0.01}, 'was made with another config (learning_rate: 0.001 -> 0.01)'),
    ({'search.factor_range': (1.0, 10000.0)}, 'was made with another search space'),
    ({'search.space': 'supervision'}, 'was made with another search space'),
])
def test_a_sweep_folder_of_another_config_or_space_is_refused_and_kept(finished_sweep, overrides, message):
  before = file_bytes(finished_sweep / 'trials.json')
  with pytest.raises(UserError) as e:
    search.run_search(sweep_config(max_evals=2, num_epochs=1, **overrides), str(finished_sweep))
  assert f'{finished_sweep / "trials.json"} {message}' in str(e.value)
  assert file_bytes(finished_sweep / 'trials.json') == before
  assert sorted(p for p in os.listdir(finished_sweep) if p.startswith('trial_')) == ['trial_000']


@pytest.mark.parametrize('content', ['{"format": 1, "trials": [', 'not json', '[]', '{"format": 7, "trials": []}'])
def test_a_corrupted_trials_file_is_named_and_left_untouched(tmp_path, content):
  (tmp_path / 'trials.json').write_text(content)
  with pytest.raises(UserError) as e:
    search.run_search(sweep_config(), str(tmp_path))
  assert f'{tmp_path / "trials.json"} is corrupted' in str(e.value)
  assert 'it was left untouched' in str(e.value)
  assert (tmp_path / 'trials.json').read_text() == content
  assert os.listdir(tmp_path) == ['trials.json']


def test_cli_errors_are_one_line(tmp_path):
  (tmp_path / 'trials.json').write_text('not json')
  proc = run_cli('--config=configs/demo.py', f'--workdir={tmp_path}', '--config.search.max_evals=2')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(f'error: {tmp_path / "trials.json"} is corrupted')
  assert 'Traceback' not in proc.stderr
  proc = run_cli('--config=configs/demo.py', f'--workdir={tmp_path / "new"}', '--config.search.max_evals=0')
  assert proc.returncode == 1
  assert 'error: search.max_evals=0 must be >= 1' in proc.stderr and 'Traceback' not in proc.stderr
  proc = run_cli('--plot_only', f'--workdir={tmp_path / "nothing"}')
  assert proc.returncode == 1
  assert f'error: {tmp_path / "nothing" / "trials.json"} does not exist' in proc.stderr and 'Traceback' not in proc.stderr
