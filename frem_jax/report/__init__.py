"""The paper's tables and figures from finished runs and searches: `write_report(runs, search_dirs, out)`.

The command line is `python -m frem_jax.report` (report/__main__.py). The code is in report/lib.py,
loaded on first use (lazy.py), so that the command refuses a bad flag before it loads JAX;
`parse_runs`, the command's reading of --runs, is here for the same reason.
"""

from frem_jax import lazy
from frem_jax.errors import UserError


def parse_runs(specs: list) -> dict:
  """NAME=DIR[,DIR...] specs -> {name: [dirs]}; UserError names a malformed or repeated one."""
  runs = {}
  for spec in specs:
    name, sep, paths = spec.partition('=')
    dirs = paths.split(',')
    if not sep or not name or not all(dirs):
      raise UserError(f'--runs: {spec!r} is not NAME=DIR or NAME=DIR1,DIR2,... (e.g. frem=runs/mouse_frem)')
    if name in runs:
      raise UserError(f'--runs: {name!r} is given twice; give its runs as one comma list')
    runs[name] = dirs
  return runs


__getattr__, __dir__ = lazy.forward(__name__)
