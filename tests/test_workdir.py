"""A run's folder: which config changes a resume accepts."""

import json

import pytest

from configs import default
from frem_jax import workdir
from frem_jax.errors import UserError


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
