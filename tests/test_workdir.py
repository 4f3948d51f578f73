"""A run's folder: which config changes a resume accepts."""

import json
import os
import subprocess
import sys

import pytest

from configs import default
from frem_jax import workdir
from frem_jax.errors import UserError
from frem_jax.search import store as search_store


def _saved_without(tmp_path, *dotted):
  """A run folder whose config.json lacks `dotted` keys, as one saved before they existed."""
  config = workdir.config_to_json(default.get_config())
  for key in dotted:
    section, name = key.split('.')
    del config[section][name]
  (tmp_path / workdir.CONFIG_FILE).write_text(json.dumps(config))
  return str(tmp_path)


def test_a_key_added_since_the_run_was_saved_resumes_at_its_default(tmp_path):
  run = _saved_without(tmp_path, 'search.halving', 'search.reduction_factor')
  workdir.check(run, default.get_config())  # no error


def test_a_key_added_since_the_run_was_saved_is_refused_at_another_value(tmp_path):
  run = _saved_without(tmp_path, 'search.halving')
  config = default.get_config()
  config.search.halving = True
  with pytest.raises(UserError, match=r"holds a run with a different config \(search.halving: '<missing>' -> True\)"):
    workdir.check(run, config)


def test_a_key_the_run_had_is_compared_as_before(tmp_path):
  run = _saved_without(tmp_path)
  config = default.get_config()
  config.frem.factor = 10.0
  with pytest.raises(UserError, match=r'frem.factor: 632.0 -> 10.0'):
    workdir.check(run, config)


def test_a_trial_cut_off_by_a_kill_resumes_in_a_sweep_extended_to_more_trials(tmp_path):
  """`--config.search.max_evals` may grow when a sweep resumes; its cut-off trial then resumes under it."""
  trial = _saved_without(tmp_path)  # saved with search.max_evals unset (the space's default)
  config = default.get_config()
  config.search.max_evals = 60
  workdir.check(trial, config)  # no error
  assert set(search_store.RESUMABLE_KEYS) <= set(workdir.RESUMABLE_KEYS)


def test_a_folder_left_by_a_process_killed_while_writing_its_config_counts_as_empty(tmp_path):
  """A sweep's worker killed mid-write leaves the lock and write_atomic's temporary: a new run starts there."""
  run = tmp_path / 'trial_001'
  kill = ('import os, signal; from frem_jax import files, workdir_lock\n'
          f'with workdir_lock.hold({str(run)!r}):\n'
          f'  files.write_atomic({str(run / workdir.CONFIG_FILE)!r}, lambda f: os.kill(os.getpid(), signal.SIGKILL))')
  killed = subprocess.run([sys.executable, '-c', kill], check=False)
  assert killed.returncode == -9
  assert workdir.CONFIG_FILE not in os.listdir(run) and len(os.listdir(run)) == 2, os.listdir(run)
  workdir.check(str(run), default.get_config())  # no error
  (run / 'notes.txt').write_text('mine')
  with pytest.raises(UserError, match='is not empty and holds no config.json'):
    workdir.check(str(run), default.get_config())


def test_a_runs_data_folder_is_absolute_its_own_or_beside_the_workdir(tmp_path, monkeypatch):
  """A sweep hands it to trials that may start in other folders (Ray's workers do)."""
  from frem_jax import datasets  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  config = default.get_config()
  assert datasets.data_dir_of(config, 'sweeps/demo') == str(tmp_path / 'sweeps' / 'tensorflow_datasets')
  config.dataset.data_dir = 'prepared'
  assert datasets.data_dir_of(config, 'sweeps/demo') == str(tmp_path / 'prepared')
  config.dataset.source_dir = 'raw'
  shared = datasets.with_data_dir(config, 'sweeps/demo')  # what a sweep hands its trials
  assert (shared.dataset.data_dir, shared.dataset.source_dir) == (str(tmp_path / 'prepared'), str(tmp_path / 'raw'))
  assert config.dataset.source_dir == 'raw'  # a copy: the sweep's own config is as it was
