"""Atomic writes: the whole file or the old one, usual permissions, no temporary files left."""

import os
import stat

import pytest

from frem_jax import files


def test_atomic_json_write_replaces_the_file_with_the_usual_permissions(tmp_path):
  path = tmp_path / 'results.json'
  path.write_text('old')
  files.write_json_atomic(str(path), {'miou': 0.5})
  assert path.read_text() == '{\n  "miou": 0.5\n}\n'
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
  assert os.listdir(tmp_path) == ['results.json']


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'trials.json'
  path.write_text('old')
  with pytest.raises(TypeError):
    files.write_json_atomic(str(path), {'bad': object()})
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['trials.json']
