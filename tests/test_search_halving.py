"""The TPE sweep with successive halving at tiny shapes: decisions match the scheduler, resume after SIGKILL, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from frem_jax import checkpointing
from frem_jax import epochs
from frem_jax import parallel
from frem_jax import search
from frem_jax.config_validation import validate_config
from frem_jax.errors import UserError
from frem_jax.search import asha
from tests.tiny import DATA_DIR
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Rungs at 1 and 2 epochs (η = 2): of 4 trials, at most 2 train both epochs.
HALVING = {'num_epochs': 2, 'search.max_evals': 4, 'search.halving': True, 'search.min_epochs': 1,
           'search.reduction_factor': 2}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def curves(workdir, record):
  """Each trial's validation mIoU per epoch, from its own metrics.jsonl."""
  result = {}
  for t in record['trials']:
    with open(os.path.join(workdir, t['workdir'], 'metrics.jsonl')) as f:
      result[t['number']] = [json.loads(line)['val/miou'] for line in f if line.strip()]
  return result


def replayed(record, curves_by_trial):
  """(status, epochs, rung_scores) of every trial in a one-worker replay of the scheduler on the recorded curves."""
  h = record['halving']
  events = asha.simulate(asha.Asha(h['min_epochs'], h['reduction_factor'], h['rungs'][-1]),
                         curves_by_trial, len(record['trials']))
  status = {asha.CONTINUE: 'running', asha.STOP: 'stopped', asha.FINISH: 'ok'}
  final = {}
  for trial, at, score, decision in events:
    _, epochs_before, scores = final.get(trial, (None, 0, []))
    if decision == 'fail':
      final[trial] = ('fail', epochs_before, scores)
    else:
      final[trial] = (status[decision], at, scores + [score])
  return final


def recorded(record):
  return {t['number']: (t['status'], t['epochs'], t['rung_scores']) for t in record['trials']}


def test_halving_sweep_trains_rung_by_rung_as_the_scheduler_decides(tmp_path, monkeypatch):
  # Widths no other test uses, so that this sweep's compilation is its own.
  config = tiny_config(**HALVING, **{'model.features': (4, 8, 20)})
  restored = []
  restore = checkpointing.restore
  def spy(manager, epoch, template, *args, **kwargs):
    restored.append((os.path.basename(os.path.dirname(str(manager.directory))), epoch))
    return restore(manager, epoch, template, *args, **kwargs)
  monkeypatch.setattr(checkpointing, 'restore', spy)
  train_fn = epochs.jit_train_step_on_device(True, False, parallel.make_mesh(jax.local_devices()[:1]))
  before = train_fn._cache_size()
  record = search.run_search(config, str(tmp_path))
  assert train_fn._cache_size() - before == 1  # every rung of every trial shares one train step

  on_disk = read_json(tmp_path / 'trials.json')
  assert on_disk == record
  assert record['halving'] == {'min_epochs': 1, 'reduction_factor': 2, 'rungs': [1, 2]}
  assert [t['number'] for t in record['trials']] == [0, 1, 2, 3]
  assert recorded(record) == replayed(record, curves(tmp_path, record))
  statuses = [t['status'] for t in record['trials']]
  # These seeds' curves stop at least one trial (deterministic here; a change of the numbers may need other seeds).
  assert statuses[0] == 'ok' and set(statuses) <= {'ok', 'stopped'} and 'stopped' in statuses
  for t in record['trials']:
    run = read_json(tmp_path / t['workdir'] / 'results.json')
    assert run['epochs_completed'] == t['epochs'] == len(t['rung_scores'])
    assert t['val_miou'] == run['val']['miou'] == t['rung_scores'][-1]  # best so far at the epoch reached
    assert read_json(tmp_path / t['workdir'] / 'config.json')['num_epochs'] == t['epochs']
    if t['epochs'] == 2:  # its second rung went on from its own epoch-1 checkpoint
      assert (t['workdir'], 1) in restored
  best = read_json(tmp_path / 'best.json')
  assert best['status'] == 'ok' and best['epochs'] == 2
  assert os.path.exists(tmp_path / 'search.png')

  search.run_search(config, str(tmp_path))  # finished: nothing is trained again
  assert read_json(tmp_path / 'trials.json') == on_disk


SWEEP_CONFIG_FILE = """
from tests.tiny import tiny_config

def get_config():
  return tiny_config(**{{**{halving!r}, 'dataset.data_dir': {data_dir!r}}})
"""


def test_halving_sweep_killed_mid_way_resumes_to_exactly_max_evals(tmp_path):
  config_file = tmp_path / 'sweep_config.py'
  config_file.write_text(SWEEP_CONFIG_FILE.format(halving=HALVING, data_dir=DATA_DIR))
  workdir = tmp_path / 'sweep'
  args = [sys.executable, '-m', 'frem_jax.search', f'--config={config_file}', f'--workdir={workdir}']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  trials = []
  try:
    # Kill it while the third trial trains its first rung.
    while time.time() < deadline and proc.poll() is None:
      if os.path.exists(workdir / 'trials.json'):
        trials = read_json(workdir / 'trials.json')['trials']
        if len(trials) == 3 and os.path.exists(workdir / 'trial_002' / 'config.json'):
          break
      time.sleep(0.05)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert [t['status'] for t in trials][2:] == ['running'], 'the sweep was not caught mid-way'

  resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  record = read_json(workdir / 'trials.json')
  assert [t['number'] for t in record['trials']] == [0, 1, 2, 3]
  assert recorded(record) == replayed(record, curves(workdir, record))
  assert record['trials'][0] == trials[0]  # finished before the kill: not trained again
  assert record['trials'][2]['values'] == trials[2]['values']  # the cut-off trial is resumed as proposed
  assert sorted(p for p in os.listdir(workdir) if p.startswith('trial_')) == [
      'trial_000', 'trial_001', 'trial_002', 'trial_003']
  assert 'best trial' in resumed.stdout


@pytest.mark.parametrize('overrides,message', [
    ({'search.reduction_factor': 1}, 'search.reduction_factor (η)=1 must be an integer >= 2'),
    ({'search.reduction_factor': 0}, 'search.reduction_factor (η)=0 must be an integer >= 2'),
    ({'search.min_epochs': 0}, 'search.min_epochs=0 must be an integer >= 1, or None'),
    ({'search.min_epochs': -2}, 'search.min_epochs=-2 must be an integer >= 1, or None'),
    ({'search.min_epochs': 3}, 'search.min_epochs=3 must be <= num_epochs=2 (the first rung of search.halving)'),
])
def test_bad_halving_settings_are_refused_before_anything_is_written(overrides, message, tmp_path):
  with pytest.raises(UserError) as e:
    search.run_search(tiny_config(**{**HALVING, **overrides}), str(tmp_path / 'sweep'))
  assert message in str(e.value) and '\n' not in str(e.value)
  assert not os.path.exists(tmp_path / 'sweep')


def test_min_epochs_above_num_epochs_is_no_error_without_halving():
  validate_config(tiny_config(**{'num_epochs': 2, 'search.min_epochs': 5}))


def test_bad_halving_setting_on_the_command_line_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'frem_jax.search', '--config=configs/demo.py', f'--workdir={tmp_path / "s"}',
       '--config.search.halving=True', '--config.search.min_epochs=50'],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: search.min_epochs=50 must be <= num_epochs=40 (the first rung of search.halving); '
      'lower it or train longer')
  assert not os.path.exists(tmp_path / 's')
