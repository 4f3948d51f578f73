"""Runs and sweeps saved by older versions (`model.conv_impl`, `model.upconv_impl`) still resume and load."""

import json

import pytest

from frem_jax import workdir as workdir_lib
from frem_jax.errors import UserError
from tests.tiny import tiny_config


def _saved_before_layers(config, conv_impl='auto', upconv_impl='matmul') -> dict:
  saved = workdir_lib.config_to_json(config)
  del saved['model']['layers']
  saved['model'].update(conv_impl=conv_impl, upconv_impl=upconv_impl)
  return saved


@pytest.mark.parametrize('conv_impl,upconv_impl,layers', [
    ('auto', 'matmul', 'auto'), ('xla', 'xla', 'flax'), ('auto', 'xla', 'flax'),
    ('cpu_kernel', 'matmul', 'cpu')])
def test_old_keys_become_model_layers(conv_impl, upconv_impl, layers):
  upgraded = workdir_lib.upgrade(_saved_before_layers(tiny_config(), conv_impl, upconv_impl))
  assert upgraded['model']['layers'] == layers
  assert 'conv_impl' not in upgraded['model'] and 'upconv_impl' not in upgraded['model']


def test_a_run_saved_with_the_old_keys_resumes_and_loads(tmp_path):
  config = tiny_config()
  (tmp_path / 'config.json').write_text(json.dumps(_saved_before_layers(config, 'xla', 'xla')))
  workdir_lib.check(str(tmp_path), config)  # the same run: no error
  assert workdir_lib.read_config(str(tmp_path)).model.layers == 'flax'


def test_runs_without_either_key_keep_their_config():
  saved = workdir_lib.config_to_json(tiny_config())
  assert workdir_lib.upgrade(saved) is saved


def test_a_run_saved_before_half_precision_computed_in_float32(tmp_path):
  saved = workdir_lib.config_to_json(tiny_config())
  del saved['half_precision']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  workdir_lib.check(str(tmp_path), tiny_config())  # the same run: it resumes
  assert workdir_lib.read_config(str(tmp_path)).half_precision is False
  with pytest.raises(UserError, match=r'half_precision: False -> True'):
    workdir_lib.check(str(tmp_path), tiny_config(half_precision=True))
