"""Opt-in pytest plugin: where the suite's time goes to JAX compiling, test by test (issue 27).

  python -m pytest -p tests.compile_profile          # the suite as usual, then
  python -m tests.compile_profile                    # the tests ranked by compile seconds,
                                                     # then the programs by name

Each process of the suite (the xdist workers) writes, per test, the seconds of
XLA's backend compiles (persistent-cache reads included), of tracing and
lowering, how many programs, and the test's setup + call seconds, and per
program name (jit's function name) its compiles and their seconds, to
.pytest_cache/compile_profile/PID.json: a name compiled often with many seconds
is a program the tests could share. Commands a test starts in a subprocess
are not counted (their time is in the test's wall seconds).
"""

import collections
import glob
import json
import os
import shutil
import sys

import pytest

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.pytest_cache',
                      'compile_profile')
_EVENTS = {'/jax/core/compile/backend_compile_duration': 'compile_s',
           '/jax/core/compile/jaxpr_trace_duration': 'trace_s',
           '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s'}
_test = ['(collection)']
_stats: dict = collections.defaultdict(lambda: collections.defaultdict(float))
_programs: dict = collections.defaultdict(lambda: collections.defaultdict(float))


def _listener(event, duration, fun_name='?', **_):
  if event in _EVENTS:
    _stats[_test[0]][_EVENTS[event]] += duration
    if _EVENTS[event] == 'compile_s':
      _stats[_test[0]]['programs'] += 1
      _programs[fun_name]['compile_s'] += duration
      _programs[fun_name]['compiles'] += 1


def pytest_configure(config):
  del config
  if 'PYTEST_XDIST_WORKER' not in os.environ:  # the run's first process: a profile of this run only
    shutil.rmtree(FOLDER, ignore_errors=True)
  # Imported here, after tests/conftest.py has set the suite's JAX_* variables: JAX reads them
  # when it is first imported, and a plugin importing it earlier would run without the cache.
  import jax.monitoring  # pylint: disable=g-import-not-at-top
  jax.monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  _test[0] = item.nodeid


def pytest_runtest_logreport(report):
  if report.when in ('setup', 'call'):
    _stats[report.nodeid]['wall_s'] += report.duration


def pytest_unconfigure(config):
  del config
  if not any(v.get('programs') for v in _stats.values()):
    return  # xdist's controller, which only relays its workers' reports
  os.makedirs(FOLDER, exist_ok=True)
  with open(os.path.join(FOLDER, f'{os.getpid()}.json'), 'w') as f:
    json.dump({'tests': _stats, 'programs': _programs}, f)


def main(top: int = 25) -> None:
  stats: dict = collections.defaultdict(lambda: collections.defaultdict(float))
  programs: dict = collections.defaultdict(lambda: collections.defaultdict(float))
  for path in glob.glob(os.path.join(FOLDER, '*.json')):
    with open(path) as f:
      profile = json.load(f)
    for into, part in ((stats, profile['tests']), (programs, profile['programs'])):
      for name, values in part.items():
        for key, value in values.items():
          into[name][key] += value
  if not stats:
    sys.exit(f'no profile in {FOLDER}: run python -m pytest -p tests.compile_profile first')
  total = {k: sum(v.get(k, 0.0) for v in stats.values()) for k in ('compile_s', 'trace_s', 'lower_s', 'wall_s', 'programs')}
  print(f"{len(stats)} tests: {total['wall_s']:.0f} s in the workers' tests, of which XLA compiling "
        f"{total['compile_s']:.0f} s ({total['programs']:.0f} programs), tracing and lowering "
        f"{total['trace_s'] + total['lower_s']:.0f} s")
  print('| compile s | programs | trace+lower s | wall s | test |\n|---|---|---|---|---|')
  for test, v in sorted(stats.items(), key=lambda kv: -kv[1].get('compile_s', 0.0))[:top]:
    print(f"| {v.get('compile_s', 0):.1f} | {v.get('programs', 0):.0f} | "
          f"{v.get('trace_s', 0) + v.get('lower_s', 0):.1f} | {v.get('wall_s', 0):.1f} | {test} |")
  print('\n| compile s | compiles | program (persistent-cache reads included) |\n|---|---|---|')
  for name, v in sorted(programs.items(), key=lambda kv: -kv[1]['compile_s'])[:top]:
    print(f"| {v['compile_s']:.1f} | {v['compiles']:.0f} | {name} |")


if __name__ == '__main__':
  main()
