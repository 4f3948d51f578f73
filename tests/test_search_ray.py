"""The sweep on Ray Tune (--backend=ray): a local Ray, a 3-trial sweep killed and restored, bad input.

The tests that need Ray carry the `ray` marker and are skipped when the extra is not installed
(`pip install -e '.[test]'`: the test extra includes Ray Tune). They share one local Ray per module (`ray.init(num_cpus=2)`).
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from frem_jax import report
from frem_jax.search import plot as search_plot
from frem_jax.search import ray_tune as search_ray
from frem_jax.search import store as search_store
from frem_jax.errors import UserError
from tests.tiny import DATA_DIR
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
HAVE_RAY = importlib.util.find_spec('ray') is not None


def needs_ray(test):
  """Marks a test `ray`; skipped, saying how to install the extra, when Ray is not installed."""
  skip = pytest.mark.skipif(not HAVE_RAY, reason="Ray Tune is not installed: pip install -e '.[test]', whose test extra includes Ray Tune")
  return pytest.mark.ray(skip(test))


def read_json(path):
  with open(path) as f:
    return json.load(f)


def run_cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'frem_jax.search', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def ray_cache(tmp_path_factory):
  """The compilation cache folder of the module's Ray workers."""
  return tmp_path_factory.mktemp('jax_cache')


@pytest.fixture(scope='module')
def ray_cluster(ray_cache):
  """One local Ray for the module's tests (2 CPUs); its workers share a JAX compilation cache."""
  import ray  # pylint: disable=g-import-not-at-top
  # The raylet and its workers inherit this process's environment when Ray starts. The folder is
  # given as the commands take it: a trial uses it only if the trainable sets the cache up itself.
  # JAX's own variable (the suite's shared cache, tests/conftest.py) would take precedence: not for them.
  env = {'FREM_JAX_COMPILATION_CACHE': str(ray_cache), 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
         'JAX_PLATFORMS': 'cpu', 'JAX_COMPILATION_CACHE_DIR': None}
  saved = {k: os.environ.get(k) for k in env}
  for k, v in env.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  try:
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k)
      else:
        os.environ[k] = v
  yield context.address_info['gcs_address']
  ray.shutdown()


def ray_config(**overrides):
  """The sweep of SWEEP_CONFIG_FILE: two levels (features (4, 8)) compile faster than tiny's three."""
  return tiny_config(**{'num_epochs': 2, 'search.max_evals': 3, 'model.features': (4, 8), **overrides})


SWEEP_CONFIG_FILE = """
from tests.tiny import tiny_config

def get_config():
  config = tiny_config(num_epochs=2, **{{'dataset.data_dir': {data_dir!r}, 'model.features': (4, 8)}})
  config.search.max_evals = 3
  return config
"""


@needs_ray
def test_ray_sweep_killed_after_its_first_trial_restores_to_exactly_three_trials(ray_cluster, ray_cache, tmp_path):
  config_file = tmp_path / 'sweep_config.py'
  config_file.write_text(SWEEP_CONFIG_FILE.format(data_dir=DATA_DIR))
  workdir = tmp_path / 'sweep'
  # The first run joins the module's Ray, one trial at a time; it is killed while trial 1 trains.
  args = [sys.executable, '-m', 'frem_jax.search', f'--config={config_file}', f'--workdir={workdir}',
          '--backend=ray', f'--ray_address={ray_cluster}', '--max_concurrent_trials=1']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  start = time.time()
  deadline = start + 600  # a wait, not a timing: under a loaded machine Ray's start alone takes minutes
  trials = []
  try:
    while time.time() < deadline and proc.poll() is None:
      if os.path.exists(workdir / 'trials.json'):
        trials = read_json(workdir / 'trials.json')['trials']
        if [t['status'] for t in trials] == ['ok', 'running']:
          break
      time.sleep(0.1)
  finally:
    ended_by_itself = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  assert [t['status'] for t in trials] == ['ok', 'running'], (
      f'the sweep was not caught mid-way: trials {[t["status"] for t in trials]}, '
      f'{"it ended by itself" if ended_by_itself else "still running"} after {time.time() - start:.0f} s')
  # Trial 0's worker wrote its compiled train step where FREM_JAX_COMPILATION_CACHE says.
  assert [n for n in os.listdir(ray_cache) if n.startswith('jit_step-')], os.listdir(ray_cache)
  print(f'killed after {time.time() - start:.1f} s')

  # The same sweep again (here in-process, on the same Ray) restores Ray's experiment and finishes.
  config = ray_config()
  record = search_ray.run_search(config, str(workdir), max_concurrent_trials=1)
  final = read_json(workdir / 'trials.json')
  assert final == record and final['backend'] == 'ray'
  assert final['space']['ranges'] == {'num_selected': [1, 8], 'factor': [1.0, 1000.0]}
  entries = final['trials']
  assert [t['number'] for t in entries] == [0, 1, 2]
  assert [t['status'] for t in entries] == ['ok', 'ok', 'ok']
  assert entries[0] == trials[0]  # a finished trial is not re-run
  assert entries[1]['values'] == trials[1]['values']  # the cut-off trial goes on as proposed
  assert len({(t['values']['num_selected'], t['values']['factor']) for t in entries}) == 3
  assert sorted(p for p in os.listdir(workdir) if p.startswith('trial_')) == [
      'trial_000', 'trial_001', 'trial_002']
  # The local sweep's schema, with the numbers of each trial's own run.
  plain_keys = {'number', 'values', 'status', 'reason', 'val_miou', 'best_epoch', 'test_miou',
                'test_iou_per_class', 'wall_seconds', 'device', 'workdir'}
  for t in entries:
    assert set(t) == plain_keys and t['reason'] is None
    b, x = t['values']['num_selected'], t['values']['factor']
    assert isinstance(b, int) and 1 <= b <= 8 and isinstance(x, float) and 1.0 <= x <= 1000.0
    run = read_json(workdir / t['workdir'] / 'results.json')
    trial_config = read_json(workdir / t['workdir'] / 'config.json')
    assert trial_config['frem']['num_selected'] == b and trial_config['frem']['factor'] == x
    assert t['val_miou'] == run['val']['miou'] and 0.0 < t['val_miou'] < 1.0
    assert t['test_miou'] == run['test']['miou'] and t['test_iou_per_class'] == run['test']['iou_per_class']
    assert t['best_epoch'] in (1, 2) and t['wall_seconds'] > 0 and t['device'].endswith('cpu:0')
  with open(workdir / 'trial_001' / 'metrics.jsonl') as f:  # each epoch once, cut off or not
    assert [json.loads(line)['epoch'] for line in f] == [1, 2]
  best = read_json(workdir / 'best.json')
  assert best == max(entries, key=lambda t: t['val_miou'])
  # Ray's own records: a result folder per trial (a trial Ray ran again gets a suffix), whose
  # last result has the trial's score.
  for t in entries:
    folders = [p for p in os.listdir(workdir / 'ray')
               if p.startswith(t['workdir']) and os.path.exists(workdir / 'ray' / p / 'result.json')]
    results = [(workdir / 'ray' / p / 'result.json').read_text().splitlines() for p in folders]
    last = [json.loads(lines[-1]) for lines in results if lines]  # a cut-off one may have none
    assert any(r['finished'] and r['val_miou'] == t['val_miou'] for r in last), folders
  # Every epoch was reported to Tune (train_and_evaluate's on_epoch), the last one with the results.
  reported = [json.loads(l) for l in (workdir / 'ray' / 'trial_002' / 'result.json').read_text().splitlines()]
  assert [(r['epoch'], r.get('finished', False)) for r in reported] == [(1, False), (2, True)]
  with open(workdir / 'trial_002' / 'metrics.jsonl') as f:
    assert reported[0]['val_miou'] == json.loads(f.readline())['val/miou']

  # --plot_only and the report read the folder as they read a local sweep's.
  os.remove(workdir / 'search.png')
  print(search_plot.plot(search_store.load(str(workdir)), str(workdir)))
  with open(workdir / 'search.png', 'rb') as f:
    assert f.read(8) == PNG_MAGIC
  out = report.write_report({}, [str(workdir)], str(tmp_path / 'report'))
  assert out['searches'][0]['trials'] == 3 and out['searches'][0]['ok'] == 3

  # Run again: Ray's experiment is finished, nothing more trains.
  print(f'restored and finished after {time.time() - deadline + 240:.1f} s')
  again = search_ray.run_search(config, str(workdir), max_concurrent_trials=1)
  assert again['trials'] == entries
  # Ray cannot change the number of trials of a started experiment: said in one line.
  with pytest.raises(UserError, match=r'was started on Ray with search.max_evals=3; Ray cannot change it'):
    search_ray.run_search(ray_config(**{'search.max_evals': 4}), str(workdir))



def test_backend_ray_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'ray', None)  # as if not installed: `import ray` raises ImportError
  with pytest.raises(UserError) as e:
    search_ray.run_search(ray_config(), str(tmp_path / 'sweep'))
  assert str(e.value).startswith('--backend=ray needs Ray Tune, which is not installed')
  assert str(e.value).endswith("pip install -e '.[ray]'")
  assert not os.path.exists(tmp_path / 'sweep')


def test_cli_without_ray_installed_prints_one_line(tmp_path):
  # A `ray` package that fails to import stands for a missing one.
  fake = tmp_path / 'no_ray' / 'ray'
  fake.mkdir(parents=True)
  (fake / '__init__.py').write_text("raise ImportError('No module named ray')\n")
  env = dict(os.environ, PYTHONPATH=f'{fake.parent}{os.pathsep}{ROOT}')
  proc = run_cli('--config=configs/demo.py', f'--workdir={tmp_path / "sweep"}', '--backend=ray', env=env)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --backend=ray needs Ray Tune, which is not installed (No module named ray): "
      "pip install -e '.[ray]'")
  assert 'Traceback' not in proc.stderr
  proc = run_cli('--config=configs/demo.py', f'--workdir={tmp_path / "sweep"}', '--max_concurrent_trials=2')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: --max_concurrent_trials is for --backend=ray; add --backend=ray or leave it out')


@pytest.mark.parametrize('options,message', [
    ({'max_concurrent_trials': -1}, '--max_concurrent_trials=-1 must be an integer >= 1, or 0 '),
    ({'max_concurrent_trials': 1.5}, '--max_concurrent_trials=1.5 must be an integer >= 1, or 0 '),
    ({'cpus_per_trial': 0}, '--cpus_per_trial=0 must be > 0'),
    ({'gpus_per_trial': -1}, '--gpus_per_trial=-1 must be an integer >= 0'),
])
def test_bad_ray_options_are_refused_before_anything_is_written(options, message, tmp_path):
  with pytest.raises(UserError) as e:
    search_ray.run_search(ray_config(), str(tmp_path / 'sweep'), **options)
  assert str(e.value).startswith(message)
  assert not os.path.exists(tmp_path / 'sweep')


def test_a_bad_search_setting_is_named_before_ray_is_loaded(tmp_path, monkeypatch):
  def load_ray():
    raise AssertionError('Ray was loaded before the settings were checked')
  monkeypatch.setattr(search_ray, '_import_tune', load_ray)
  with pytest.raises(UserError) as e:
    search_ray.run_search(ray_config(**{'search.max_evals': 0}), str(tmp_path / 'sweep'))
  assert str(e.value) == 'search.max_evals=0 must be >= 1'
  assert not os.path.exists(tmp_path / 'sweep')


def test_a_population_on_ray_is_refused_in_one_line(tmp_path):
  with pytest.raises(UserError) as e:
    search_ray.run_search(ray_config(**{'search.population': 2}), str(tmp_path / 'sweep'))
  assert str(e.value) == ('search.population=2 is not supported with --backend=ray: Ray runs one trial per worker; '
                          'use --backend=local for populations (docs/population.md)')
  assert not os.path.exists(tmp_path / 'sweep')


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]  # closed again when this returns: nothing listens there


class _NoCluster:
  """Stands for the `ray` module where no cluster runs (as `ray.init(address='auto')` says then)."""

  @staticmethod
  def is_initialized():
    return False

  @staticmethod
  def init(address=None, **_):
    raise ConnectionError('Could not find any running Ray instance. Please specify the one to '
                          'connect to by setting `--address` flag or `RAY_ADDRESS` environment variable.')


@pytest.mark.parametrize('address,message', [
    ('127.0.0.1:{port}', '--ray_address=127.0.0.1:{port} cannot be reached ('),
    ('ray://127.0.0.1:{port}', '--ray_address=ray://127.0.0.1:{port} cannot be reached ('),
    ('auto', '--ray_address=auto cannot be reached (Could not find any running Ray instance.'),
    ('headnode', '--ray_address=headnode is not HOST:PORT'),
])
def test_an_unreachable_ray_address_fails_fast_in_one_line(address, message):
  port = _closed_port()
  t0 = time.monotonic()
  with pytest.raises(UserError) as e:
    search_ray.connect(_NoCluster, address.format(port=port))
  assert str(e.value).startswith(message.format(port=port)) and '\n' not in str(e.value)
  assert time.monotonic() - t0 < search_ray.CONNECT_TIMEOUT_S + 5  # not Ray's minute of retries


def _fake_trial(number, status, last_result, values=None):
  return types.SimpleNamespace(
      experiment_tag=f'{number + 1}_factor=1.5,num_selected=3', status=status, last_result=last_result,
      config=values or {'factor': 1.5, 'num_selected': 3.0}, error_file=None)


def test_ray_trials_become_entries_of_the_local_schema():
  done = {'epoch': 4, 'val_miou': 0.5, 'finished': True, 'best_epoch': 3, 'test_miou': 0.4,
          'test_iou_per_class': {'a': 0.4}, 'rung_scores': [0.3], 'device': 'h/cpu:0', 'wall_seconds': 9.0}
  ok = search_ray.entry_of(_fake_trial(0, 'TERMINATED', done), halving=False)
  assert ok == {'number': 0, 'values': {'factor': 1.5, 'num_selected': 3}, 'status': 'ok', 'reason': None,
                'val_miou': 0.5, 'best_epoch': 3, 'test_miou': 0.4, 'test_iou_per_class': {'a': 0.4},
                'wall_seconds': 9.0, 'device': 'h/cpu:0', 'workdir': 'trial_000'}
  # Stopped by ASHA at its rung of epoch 2: scored by its best mIoU so far, no test numbers.
  cut = {'epoch': 2, 'val_miou': 0.25, 'best_epoch': 1, 'rung_scores': [0.25], 'device': 'h/cpu:0',
         'wall_seconds': 3.0}
  stopped = search_ray.entry_of(_fake_trial(11, 'TERMINATED', cut), halving=True)
  assert stopped['workdir'] == 'trial_011' and stopped['number'] == 11
  assert (stopped['status'], stopped['val_miou'], stopped['best_epoch'], stopped['test_miou']) == (
      'stopped', 0.25, 1, None)
  assert (stopped['epochs'], stopped['rung_scores']) == (2, [0.25])
  running = search_ray.entry_of(_fake_trial(2, 'RUNNING', cut), halving=False)
  assert running['status'] == 'running' and running['val_miou'] is None
  failed = search_ray.entry_of(_fake_trial(3, 'ERROR', {}), halving=False)
  assert failed['status'] == 'fail' and failed['val_miou'] is None and failed['reason']


def test_the_reason_of_a_failed_trial_is_its_trial_failed_line(tmp_path):
  error = tmp_path / 'error.txt'
  error.write_text('Traceback (most recent call last):\n  ...\nray.exceptions.RayTaskError(TrialFailed): '
                   'ray::ImplicitFunc.train()\n  ...\nfrem_jax.search_ray.TrialFailed: TrainingDiverged: '
                   'training diverged: the loss is nan in epoch 1\n')
  trial = _fake_trial(0, 'ERROR', {})
  trial.error_file = str(error)
  assert search_ray.entry_of(trial, halving=False)['reason'] == (
      'TrainingDiverged: training diverged: the loss is nan in epoch 1')


@needs_ray
def test_halving_uses_ray_asha_with_the_sweeps_rungs():
  config = ray_config(num_epochs=20)
  assert search_ray.make_scheduler(config) is None  # the plain sweep: every trial trains num_epochs
  config.search.halving = True
  config.search.min_epochs = 2
  config.search.reduction_factor = 3
  scheduler = search_ray.make_scheduler(config)
  assert type(scheduler).__name__ == 'AsyncHyperBandScheduler'
  assert (scheduler._time_attr, scheduler._metric, scheduler._mode, scheduler._max_t) == (
      'epoch', 'val_miou', 'max', 20)
  assert [r[0] for r in scheduler._brackets[0]._rungs] == [18, 6, 2]
  assert search_ray.halving_settings(config) == (2, 3, [2, 6, 18])
  config.search.min_epochs = None  # the local sweep's default: num_epochs / η^4, at least 1
  assert search_ray.halving_settings(config) == (1, 3, [1, 3, 9])


def test_the_cluster_template_installs_the_extra_and_starts_ray_on_every_node():
  yaml = pytest.importorskip('yaml')
  with open(os.path.join(ROOT, 'launch', 'ray_cluster.yaml')) as f:
    cluster = yaml.safe_load(f)
  assert cluster['head_node_type'] in cluster['available_node_types']
  workers = [t for n, t in cluster['available_node_types'].items() if n != cluster['head_node_type']]
  assert workers and all(t['resources']['GPU'] >= 1 for t in workers)
  assert cluster['available_node_types'][cluster['head_node_type']]['resources'] == {'CPU': 0}
  assert any('[ray]' in c and 'jax[cuda12]==0.10.2' in c for c in cluster['setup_commands'])
  assert any('ray start --head --port=6379' in c for c in cluster['head_start_ray_commands'])
  assert any('ray start --address=$RAY_HEAD_IP:6379' in c for c in cluster['worker_start_ray_commands'])
