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


def _anchors(path: str) -> set:
  """GitHub's anchors of a Markdown file's headings."""
  with open(path) as f:
    headings = [l.lstrip('#').strip() for l in f if l.startswith('#')]
  return {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-') for h in headings}


def test_every_relative_link_and_image_of_the_docs_resolves():
  pages = ['README.md', 'launch/README.md'] + [f'docs/{n}' for n in sorted(os.listdir(os.path.join(ROOT, 'docs')))
                                               if n.endswith('.md')]
  broken = []
  for page in pages:
    with open(os.path.join(ROOT, page)) as f:
      text = re.sub(r'```.*?```', '', f.read(), flags=re.S)  # commands, not links
    # A link left open (a line ending inside its parentheses) would be skipped below.
    broken += [f'{page}: unclosed link {m}' for m in re.findall(r'\]\([^)\s]*\n', text)]
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
      if re.match(r'[a-z]+:', target):
        continue
      file, _, anchor = target.partition('#')
      path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), file)) if file else os.path.join(ROOT, page)
      if not os.path.exists(path):
        broken.append(f'{page}: {target}')
      elif anchor and path.endswith('.md') and anchor not in _anchors(path):
        broken.append(f'{page}: {target} (no such heading)')
  assert broken == []
