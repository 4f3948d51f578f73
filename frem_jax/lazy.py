"""The packages of the commands load their code on first use, so that a command refuses a mistake before it loads JAX.

`python -m frem_jax.train` imports the package `frem_jax.train` before it runs its `__main__`.
Were the training code in the package's `__init__`, every command would load JAX, Flax, Orbax and
TFDS (~3 s on a 2-core CPU) before it could say that a flag or a config value is wrong. So the
package of each command (train, search, predict, report) keeps its code in `lib.py`, and its
`__init__` forwards to it (PEP 562): `from frem_jax import train; train.train_and_evaluate(...)`
loads `frem_jax.train.lib` at that first use and is the same function.
"""

import importlib
import importlib.util
import sys


def forward(package: str, module: str = 'lib'):
  """The `__getattr__` and `__dir__` of a package whose names are those of `package.module`, loaded on first use."""
  def __getattr__(name: str):  # pylint: disable=invalid-name
    # Dunders (probed by pickle, inspect, copy) are the package's own: asking must not load anything.
    if not (name.startswith('__') and name.endswith('__')) and '.' not in name:
      # `from frem_jax.search import plot` asks the package for `plot` before it imports the
      # submodule: a submodule is answered as itself, without loading the module.
      if importlib.util.find_spec(f'{package}.{name}') is not None:
        return importlib.import_module(f'{package}.{name}')
      lib = importlib.import_module(f'{package}.{module}')  # its own errors pass as they are
      if hasattr(lib, name):
        return getattr(lib, name)
    raise AttributeError(f'module {package!r} has no attribute {name!r}')

  def __dir__():  # pylint: disable=invalid-name
    return sorted(set(vars(sys.modules[package])) | set(dir(importlib.import_module(f'{package}.{module}'))))

  return __getattr__, __dir__
