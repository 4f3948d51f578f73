"""The package's imports point down: a tower of at most 7 floors, no library module imports an entry point.

`python tests/test_layering.py` prints the tower, one floor per line.
"""

import ast
import functools
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'frem_jax')
MAX_FLOORS = 7


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, os.path.dirname(ROOT))[:-len('.py')].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


@functools.lru_cache(maxsize=None)
def modules() -> dict:
  """Module name -> parsed source of every module of the package."""
  out = {}
  for folder, _, names in os.walk(ROOT):
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        with open(path) as f:
          out[_module_name(path)] = ast.parse(f.read())
  return out


def imports(name: str) -> set:
  """The package's modules that `name` imports (at module level or inside functions)."""
  known = modules()
  found = set()
  for node in ast.walk(known[name]):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      # `from pkg import module` imports the module; `from module import name` the module.
      targets = [f'{node.module}.{a.name}' for a in node.names if f'{node.module}.{a.name}' in known]
      targets = targets or [node.module]
    else:
      continue
    for target in targets:
      while target and target not in known:
        target = target.rpartition('.')[0]
      if target and target != name and target != 'frem_jax':
        found.add(target)
  return found


def is_entry_point(name: str) -> bool:
  """A program started with `python -m`: it has a `__main__` guard or is a `__main__` module."""
  if name.endswith('__main__'):
    return True
  return any(isinstance(n, ast.If) and isinstance(n.test, ast.Compare)
             and getattr(n.test.left, 'id', None) == '__name__' for n in modules()[name].body)


@functools.lru_cache(maxsize=None)
def floor(name: str, _path: tuple = ()) -> int:
  """1 for a module that imports none of the package's modules, else 1 + the highest floor it imports."""
  if name in _path:
    raise ValueError('import cycle: ' + ' -> '.join(_path[_path.index(name):] + (name,)))
  return 1 + max((floor(m, _path + (name,)) for m in imports(name)), default=0)


def test_import_tower_is_at_most_seven_floors():  # and has no cycle
  assert max(floor(m) for m in modules()) <= MAX_FLOORS


def test_no_library_module_imports_an_entry_point():
  for name in modules():
    if not is_entry_point(name):
      assert not [m for m in imports(name) if is_entry_point(m)], name


def test_the_model_never_imports_the_cpu_wing():
  for name in modules():
    if name.startswith('frem_jax.model'):
      assert not [m for m in imports(name) if m.startswith('frem_jax.cpu')], name


def test_entry_points_define_their_flags_where_the_program_starts():
  """No flag at import time: flags are defined under `if __name__ == '__main__'` (cli.py's pattern)."""
  for name, tree in modules().items():
    for node in tree.body:
      if isinstance(node, (ast.If, ast.FunctionDef, ast.ClassDef)):  # defined, or run as a program
        continue
      calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)
               and getattr(n.func, 'attr', '').startswith(('DEFINE', 'mark_flag', 'register_'))]
      assert not calls, f'{name} defines flags at import time'
    if is_entry_point(name) and any(isinstance(n, ast.FunctionDef) and n.name == 'main' for n in tree.body):
      source = ast.unparse(next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'main'))
      assert 'cli.begin(' in source, f'{name}: main must call cli.begin'


if __name__ == '__main__':
  by_floor = {}
  for m in modules():
    by_floor.setdefault(floor(m), []).append(m)
  for f in sorted(by_floor):
    print(f, ' '.join(sorted(by_floor[f])))
  print('floors:', max(by_floor))
