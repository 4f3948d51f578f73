"""The sweep on Ray Tune (--backend=ray): a local Ray, a 3-trial sweep killed and restored, bad input.

The tests that need Ray carry the `ray` marker and are skipped when the extra is not installed
(`pip install -e '.[test,ray]'`). They share one local Ray per module (`ray.init(num_cpus=2)`).
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
from frem_jax import search_plot
from frem_jax import search_ray
from frem_jax import search_store
from frem_jax.errors import UserError
from tests.tiny import DATA_DIR
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
HAVE_RAY = importlib.util.find_spec('ray') is not None


def needs_ray(test):
  """Marks a test `ray`; skipped, saying how to install the extra, when Ray is not installed."""
  skip = pytest.mark.skipif(not HAVE_RAY, reason="Ray Tune is not installed: pip install -e '.[test,ray]'")
  return pytest.mark.ray(skip(test))


def read_json(path):
  with open(path) as f:
    return json.load(f)


def run_cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'frem_jax.search', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def ray_cluster(tmp_path_factory):
  """One local Ray for the module's tests (2 CPUs); its workers share a JAX compilation cache."""
  import ray  # pylint: disable=g-import-not-at-top
  cache = str(tmp_path_factory.mktemp('jax_cache'))
  # The raylet and its workers inherit this process's environment when Ray starts.
  env = {'JAX_COMPILATION_CACHE_DIR': cache, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
         'JAX_PLATFORMS': 'cpu'}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
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


SWEEP_CONFIG_FILE = """
from tests.tiny import tiny_config

def get_config():
  config = tiny_config(num_epochs=2, **{{'dataset.data_dir': {data_dir!r}}})
  config.search.max_evals = 3
  return config
"""


@needs_ray
def test_ray_sweep_killed_after_its_first_trial_restores_to_exactly_three_trials(ray_cluster, tmp_path):
  config_file = tmp_path / 'sweep_config.py'
  config_file.write_text(SWEEP_CONFIG_FILE.format(data_dir=DATA_DIR))
  workdir = tmp_path / 'sweep'
  # The first run joins the module's Ray, one trial at a time; it is killed while trial 1 trains.
  args = [sys.executable, '-m', 'frem_jax.search', f'--config={config_file}', f'--workdir={workdir}',
          '--backend=ray', f'--ray_address={ray_cluster}', '--max_concurrent_trials=1']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  deadline = time.time() + 240
  trials = []
  try:
    while time.time() < deadline and proc.poll() is None:
      if os.path.exists(workdir / 'trials.json'):
        trials = read_json(workdir / 'trials.json')['trials']
        if [t['status'] for t in trials] == ['ok', 'running']:
          break
      time.sleep(0.1)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  assert [t['status'] for t in trials] == ['ok', 'running'], 'the sweep was not caught mid-way'
  print(f'killed after {time.time() - deadline + 240:.1f} s')

  # The same sweep again (here in-process, on the same Ray) restores Ray's experiment and finishes.
  config = tiny_config(num_epochs=2, **{'search.max_evals': 3})
  record = search_ray.run_search(config, str(workdir), max_concurrent_trials=1)
  final = read_json(workdir / 'trials.json')
  assert final == record and final['backend'] == 'ray'
  assert final['space']['ranges'] == {'num_selected': [1, 16], 'factor': [1.0, 1000.0]}
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
    assert isinstance(b, int) and 1 <= b <= 16 and isinstance(x, float) and 1.0 <= x <= 1000.0
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
    folders = [p for p in os.listdir(workdir / 'ray') if p.startswith(t['workdir'])]
    results = [(workdir / 'ray' / p / 'result.json').read_text().splitlines() for p in folders]
    last = [json.loads(lines[-1]) for lines in results if lines]  # a cut-off one may have none
    assert any(r['finished'] and r['val_miou'] == t['val_miou'] for r in last), folders

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
    search_ray.run_search(tiny_config(num_epochs=2, **{'search.max_evals': 4}), str(workdir))

