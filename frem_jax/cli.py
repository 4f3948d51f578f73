"""Command-line plumbing shared by the entry points: flag errors as one line, no traceback.

Every entry point (train, search, predict, report, bench) follows one pattern:
flags defined under `if __name__ == '__main__'`, `app.run(main,
flags_parser=parse_flags)`, `begin(argv)` first in `main`, and user errors
through `user_errors_exit()`.
"""

import contextlib
import functools
import json
import logging
import os
import re
import sys

from absl import flags

import frem_jax
from frem_jax import compilation_cache
from frem_jax.cpu import malloc
from frem_jax.errors import UserError

flags.disclaim_key_flags()  # the flags this module defines belong to the entry point that asks for them


def _one_line(error: BaseException) -> str:
  if isinstance(error, SyntaxError):
    return f'{error.msg} (line {error.lineno})'
  text = str(error.args[0]) if error.args else str(error)
  if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':  # a repr()'d message
    text = text[1:-1]
  text = text.replace('\\n', ' ').replace('\n', ' ').replace("\\'", "'")
  return re.sub(r'\s+', ' ', text)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses absl flags; a bad flag or config key prints one line and exits with status 1."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    # A config file that raised: absl quotes its traceback; keep the flag and the exception.
    message = lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}'
  except (AttributeError, KeyError) as e:  # ml_collections: unknown --config.<key>
    message = (f'unknown config key {_one_line(e)}; the keys are listed in configs/default.py '
               'and docs/config.md')
  except (TypeError, ValueError) as e:  # ml_collections: a value of the wrong type
    message = f'bad config override: {_one_line(e)}'
  except Exception as e:  # pylint: disable=broad-except  # a config file that fails to run
    message = f'a config file failed to load: {type(e).__name__}: {_one_line(e)}'
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def config_from_flag(name: str = 'config'):
  """The config of a `config_flags` flag; a file that does not load prints one line and exits 1."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = getattr(flags.FLAGS, name)
  try:
    config.keys()  # the flag's proxy reports a failed load only on first use
    return config
  except OSError as e:
    reason = str(e).strip().splitlines()[-1].strip()
    path = config_flags.get_config_filename(flags.FLAGS[name])
    print(f'error: --{name}={path} could not be loaded ({reason}); give the path of a config '
          'file such as configs/demo.py', file=sys.stderr)
    sys.exit(1)


def default_config_file() -> str:
  """The path of configs/default.py, the benchmarks' default `--config`."""
  import configs  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(configs.__file__), 'default.py')


def define_config_flag(required: bool = True, default: str = None) -> None:
  """Defines `--config` (a config file with `--config.<key>=value` overrides), optionally with a default file.

  Entry points call this under `if __name__ == '__main__'`, so that importing
  one of them defines no flag.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', default, 'Experiment config file (configs/*.py); '
                                  'override any key with --config.KEY=VALUE (docs/config.md).',
                                  lock_config=True)
  # A key flag of the entry point that called us, so that its --help lists it (absl skips this
  # module, disclaimed at its top, when it looks for the caller).
  flags.declare_key_flag('config')
  if required and default is None:
    flags.mark_flag_as_required('config')


# Library warnings that say nothing to a user of ours: TFDS's note on every load of a custom config.
# (Orbax's on every checkpoint without a new best is dropped where it arises: checkpointing.py.)
_EXPECTED_WARNINGS = ('Using custom data configuration',)


# The installed package's folder: our records are those logged from a file inside it. A substring
# such as '/frem_jax/' would also match a checkout named frem_jax (what `git clone` makes) whose
# venv, inside it, holds orbax and jax. (launch/ scripts print their results; none logs through absl.)
_PACKAGE_DIR = os.path.normcase(os.path.realpath(os.path.dirname(frem_jax.__file__)))


@functools.lru_cache(maxsize=256)
def _is_ours(pathname: str) -> bool:
  """Whether a record's file lies inside the package folder (cached: a logging file is asked again and again)."""
  return os.path.normcase(os.path.realpath(pathname)).startswith(_PACKAGE_DIR + os.sep)


class _OwnInfoOnly(logging.Filter):
  """Passes our INFO lines and everyone's warnings, minus the `_EXPECTED_WARNINGS`."""

  def filter(self, record: logging.LogRecord) -> bool:
    if _is_ours(record.pathname):
      return True
    return record.levelno >= logging.WARNING and not any(w in str(record.msg) for w in _EXPECTED_WARNINGS)


_OWN_INFO_ONLY = _OwnInfoOnly()


def quiet_library_logs() -> None:
  """Keeps the libraries' chatter out of the output, unless --verbosity (or -v) is given.

  Hidden: their INFO lines (orbax logs ~40 per checkpoint; jax's backend
  probing, e.g. the libtpu line) and TFDS's progress bars with temporary
  folder names. Warnings and errors pass.
  """
  if flags.FLAGS.is_parsed() and (flags.FLAGS['verbosity'].present or flags.FLAGS['v'].present):
    return
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  from frem_jax import datasets  # pylint: disable=g-import-not-at-top
  absl_logging.get_absl_handler().addFilter(_OWN_INFO_ONLY)  # one instance: a second call adds nothing
  # Outside absl's app.run (scripts with argparse) absl's records reach Python's own handlers.
  logging.getLogger('absl').addFilter(_OWN_INFO_ONLY)
  datasets.show_tfds_progress(False)


def check_at_least(flag: str, value: int, minimum: int) -> None:
  """UserError naming `--flag=value` unless value >= minimum."""
  if value < minimum:
    raise UserError(f'--{flag}={value} must be >= {minimum}')


def positive_ints(flag: str, values: list, what: str = 'sizes') -> list[int]:
  """The integers of a comma-list flag's `values`, or a UserError naming the flag (e.g. `--batch_sizes=4,x`)."""
  try:
    ints = [int(v) for v in values]
  except ValueError:
    ints = []
  if not ints or min(ints) < 1:
    raise UserError(f'--{flag}={",".join(values)}: {what} must be integers >= 1')
  return ints


@contextlib.contextmanager
def user_errors_exit():
  """Turns a UserError raised inside into one line `error: …` on stderr and exit status 1."""
  try:
    yield
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


def begin(argv: list[str], positional: bool = False, times_compiles: bool = False) -> list[str]:
  """What every entry point does first: tune malloc for XLA:CPU, use the compilation cache, quiet the libraries' logs.

  Returns the positional arguments, which only a command that takes them
  (`positional`) accepts; the others refuse them with one line. A command
  that reports compile seconds (`times_compiles`: the benchmarks) compiles
  without the persistent cache.
  """
  if len(argv) > 1 and not positional:
    from absl import app  # pylint: disable=g-import-not-at-top
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  malloc.tune_malloc_for_cpu()
  if times_compiles:
    compilation_cache.turn_off()
  else:
    compilation_cache.use_compilation_cache()
  quiet_library_logs()
  return list(argv[1:])


def measure_each(runs: list, measure, out: str = '') -> int:
  """What a measuring script does with its runs: `measure(run)` for each, one JSON line per run,
  all of them to `out` (if given, atomically); a UserError ends it with one line. Returns the exit status."""
  from frem_jax import files  # pylint: disable=g-import-not-at-top
  results = []
  for run in runs:
    try:
      result = measure(run)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    print(json.dumps(result), flush=True)
    results.append(result)
  if out:
    files.write_json_atomic(out, results)
  return 0
