"""A command's package forwards to its lib.py on first use (frem_jax/lazy.py); what it must not hide."""

import sys

import pytest


def _package(root, lib_source: str) -> str:
  """A package `name` under `root` whose __init__ forwards to its lib.py (`lib_source`) and that has a submodule `sub`."""
  name = f'lazy_pkg_{abs(hash(lib_source)) % 10**8}'
  folder = root / name
  folder.mkdir()
  (folder / '__init__.py').write_text('from frem_jax import lazy\n__getattr__, __dir__ = lazy.forward(__name__)\n')
  (folder / 'lib.py').write_text(lib_source)
  (folder / 'sub.py').write_text('VALUE = 2\n')
  return name


@pytest.fixture
def on_path(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(tmp_path))
  return tmp_path


def test_names_come_from_lib_and_submodules_are_themselves(on_path):
  name = _package(on_path, 'ANSWER = 1\n')
  package = __import__(name)
  assert f'{name}.lib' not in sys.modules
  assert package.sub.VALUE == 2 and f'{name}.lib' not in sys.modules  # a submodule loads no lib
  assert package.ANSWER == 1 and 'ANSWER' in dir(package) and 'sub' in dir(package)
  with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'missing'"):
    package.missing  # pylint: disable=pointless-statement
  assert not hasattr(package, 'a.b')


def test_an_error_inside_lib_is_not_hidden_as_a_missing_name(on_path):
  name = _package(on_path, 'import math\nSPEED = math.no_such_function()\n')
  package = __import__(name)
  with pytest.raises(AttributeError, match="module 'math' has no attribute 'no_such_function'"):
    package.SPEED  # pylint: disable=pointless-statement
