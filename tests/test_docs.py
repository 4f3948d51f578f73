"""The docs cannot drift: docs/config.md lists exactly the keys of configs/default.py, with its defaults; the README stays a front door."""

import ast
import os
import re

from configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _split_top_level(text: str) -> list:
  """'a, (1, 2), b' -> ['a', '(1, 2)', 'b']: commas outside parentheses."""
  parts, depth, current = [], 0, ''
  for ch in text:
    depth += ch in '([' and 1 or 0
    depth -= ch in ')]' and 1 or 0
    if ch == ',' and depth == 0:
      parts.append(current.strip())
      current = ''
    else:
      current += ch
  return parts + [current.strip()]


def _value(cell: str):
  text = cell.strip().strip('`')
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string such as jit


def documented_defaults() -> dict:
  """Dotted key -> default of every row of docs/config.md's table."""
  with open(os.path.join(ROOT, 'docs', 'config.md')) as f:
    rows = [l for l in f if l.startswith('| `')]
  out = {}
  for row in rows:
    keys_cell, default_cell = [c.strip() for c in row.strip().strip('|').split(' | ')[:2]]
    keys = re.findall(r'`([^`]+)`', keys_cell)
    prefix = keys[0].rpartition('.')[0]
    keys = [k if '.' in k or not prefix else f'{prefix}.{k}' for k in keys]
    values = _split_top_level(default_cell) if len(keys) > 1 else [default_cell]
    assert len(values) == len(keys), row
    out.update({k: _value(v) for k, v in zip(keys, values)})
  return out


def _flatten(config, prefix=''):
  out = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = tuple(value) if isinstance(value, (list, tuple)) else value
  return out


def test_config_table_lists_every_key_of_default_py_with_its_default():
  documented = documented_defaults()
  actual = _flatten(default.get_config())
  assert sorted(documented) == sorted(actual)
  for key, value in actual.items():
    assert documented[key] == value, key


def test_readme_is_a_front_door():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 250
  for page in re.findall(r'\]\((docs/[^)#]+)', readme):
    assert os.path.isfile(os.path.join(ROOT, page)), page
