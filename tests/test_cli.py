"""The train command line: one clear line and exit 1 for user mistakes, never a traceback."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_train(*args, cwd=ROOT, python=sys.executable, env=None):
  return subprocess.run([python, '-m', 'frem_jax.train', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_help_names_the_config_flag_and_its_overrides():
  proc = run_train('--help')  # absl's --help exits with status 1
  assert '--config: Experiment config file (configs/*.py); override any key with' in proc.stdout
  assert '--workdir:' in proc.stdout


@pytest.mark.parametrize('values,message', [
    (['4', '8', ''], "--batch_sizes=4,8,: batch sizes must be integers >= 1"),
    (['x'], "--batch_sizes=x: batch sizes must be integers >= 1"),
    (['0'], "--batch_sizes=0: batch sizes must be integers >= 1"),
])
def test_comma_list_of_sizes_is_checked_in_one_line(values, message):
  from frem_jax import cli  # pylint: disable=g-import-not-at-top
  from frem_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  assert cli.positive_ints('batch_sizes', ['1', '4'], 'batch sizes') == [1, 4]
  with pytest.raises(UserError) as info:
    cli.positive_ints('batch_sizes', values, 'batch sizes')
  assert str(info.value) == message


@pytest.mark.parametrize('module,flag,message', [
    ('frem_jax.bench', '--steps=4', 'error: --steps=4: medians need at least 5 timed steps'),
    ('frem_jax.bench', '--warmup=-1', 'error: --warmup=-1 must be >= 0'),
    ('frem_jax.population_bench', '--steps=0', 'error: --steps=0 must be >= 1'),
    ('frem_jax.population_bench', '--warmup=-1', 'error: --warmup=-1 must be >= 0'),
    ('frem_jax.population_bench', '--steps_per_trial=0', 'error: --steps_per_trial=0 must be >= 1'),
])
def test_a_benchmark_refuses_a_bad_count_in_one_line(module, flag, message):
  proc = subprocess.run([sys.executable, '-m', module, flag], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == message
  assert 'Traceback' not in proc.stderr and proc.stdout == ''


@pytest.mark.parametrize('flag,message', [
    ('--config.frem.num_selected=600', 'error: frem.num_selected (B)=600 must be an integer in [0, 128]'),
    ('--config.frem.factor=0', 'error: frem.factor (X)=0.0 must be > 0'),
    ('--config.supervision.weight=2', 'error: supervision.weight (λ)=2.0 must be in [0, 1]'),
    ('--config.dataset.image_size=100', 'error: dataset.image_size=100 is not divisible by 2**4=16'),
])
def test_bad_value_gives_one_line_and_exit_1(flag, message, tmp_path):
  proc = run_train('--config=configs/demo.py', f'--workdir={tmp_path}/run', flag)
  assert proc.returncode == 1
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'run')


def test_unknown_config_key_is_refused(tmp_path):
  proc = run_train('--config=configs/demo.py', f'--workdir={tmp_path}/run', '--config.frem.num_selectd=3')
  assert proc.returncode != 0
  assert 'num_selectd' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_missing_config_file_is_named(tmp_path):
  proc = run_train('--config=configs/nothere.py', f'--workdir={tmp_path}/run')
  assert proc.returncode == 1
  assert 'error: --config=configs/nothere.py could not be loaded' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_config_file_with_a_syntax_error_is_one_line(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  proc = run_train(f'--config={bad}', f'--workdir={tmp_path}/run')
  assert proc.returncode == 1
  assert 'error: a config file failed to load: SyntaxError' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_unknown_config_variant_is_one_line(tmp_path):
  proc = run_train('--config=configs/mouse.py:nonsense', f'--workdir={tmp_path}/run')
  assert proc.returncode == 1
  assert "ValueError: unknown variant 'nonsense' of configs/mouse.py" in proc.stderr
  assert 'Traceback' not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_missing_dataset_folder_leaves_no_workdir(tmp_path):
  proc = run_train('--config=configs/drosophila.py', f'--workdir={tmp_path}/run',
                   '--config.dataset.source_dir=/nonexistent/drosophila')
  assert proc.returncode == 1
  assert 'error: /nonexistent/drosophila/stack1/raw does not exist; download the' in proc.stderr
  assert 'doi:10.6084/m9.figshare.856713' in proc.stderr
  assert not os.path.exists(tmp_path / 'run')


# What loads in seconds (~3 s together on a 2-core CPU); a command refuses a mistake without them.
HEAVY = ('jax', 'flax', 'optax', 'orbax.checkpoint', 'tensorflow_datasets')


@pytest.mark.parametrize('module,args,message', [
    ('frem_jax.train', ['--config=configs/demo.py', '--workdir={tmp}/run', '--config.frem.factor=0'],
     'error: frem.factor (X)=0.0 must be > 0'),
    ('frem_jax.train', ['--config=configs/demo.py', '--workdir={tmp}/run', '--config.frem.num_selectd=3'],
     'num_selectd'),
    ('frem_jax.search', ['--config=configs/demo.py', '--workdir={tmp}/sweep', '--config.search.max_evals=0'],
     'error: search.max_evals=0 must be >= 1'),
    ('frem_jax.report', ['--runs', 'frem', '--out={tmp}/report'], "error: --runs: 'frem' is not NAME=DIR"),
    ('frem_jax.predict', ['--workdir={tmp}/run', '--output={tmp}/out', '--overlap=x'],
     "error: flag --overlap=x: invalid literal for int() with base 10: 'x'"),
])
def test_a_command_refuses_a_mistake_before_it_loads_jax(module, args, message, tmp_path):
  args = [a.format(tmp=tmp_path) for a in args]
  proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-1000:]
  loaded = {l.split('|')[-1].strip() for l in proc.stderr.splitlines() if l.startswith('import time:')}
  assert 'absl.flags' in loaded  # -X importtime listed the imports
  assert sorted(loaded.intersection(HEAVY)) == []
  assert not os.listdir(tmp_path)


def test_a_command_package_loads_its_code_on_first_use():
  code = ('import sys; from frem_jax import train, search, predict, report; from frem_jax.search import plot; '
          'print(sorted(m for m in sys.modules if m.startswith("frem_jax.") and m.endswith(".lib") or m == "jax")); '
          'from frem_jax.train import lib; print(train.train_and_evaluate is lib.train_and_evaluate); '
          'print(sorted(m for m in sys.modules if m.startswith("frem_jax.") and m.endswith(".lib"))); '
          'print(all(n in dir(train) for n in ("train_and_evaluate", "population", "__file__"))); '
          'print(hasattr(train, "a.b")); train.no_such_name')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.stdout.splitlines() == ['[]', 'True', "['frem_jax.train.lib']", 'True', 'False'], proc.stderr[-1000:]
  assert proc.stderr.strip().splitlines()[-1] == "AttributeError: module 'frem_jax.train' has no attribute 'no_such_name'"


def record(pathname: str, level: int, msg: str = 'a line') -> logging.LogRecord:
  return logging.LogRecord('absl', level, pathname, 1, msg, None, None)


def test_the_log_filter_tells_our_records_by_the_package_folder_not_by_a_name_in_the_path():
  import frem_jax  # pylint: disable=g-import-not-at-top
  from frem_jax import cli  # pylint: disable=g-import-not-at-top
  ours = os.path.join(os.path.dirname(frem_jax.__file__), 'train', 'lib.py')
  # A checkout named frem_jax with its venv inside: orbax's files are under .../frem_jax/.
  orbax = '/x/frem_jax/.venv/lib/python3.11/site-packages/orbax/checkpoint/m.py'
  keep = cli._OwnInfoOnly().filter  # pylint: disable=protected-access
  assert keep(record(ours, logging.INFO))
  assert not keep(record(orbax, logging.INFO))
  assert not keep(record('/x/frem_jax_old/frem_jax/m.py', logging.INFO))  # another copy of the package
  assert keep(record(orbax, logging.WARNING)) and keep(record(orbax, logging.ERROR))
  assert not keep(record(orbax, logging.WARNING, 'Using custom data configuration default'))


def test_a_first_run_prints_our_lines_only(tmp_path):
  """The README's demo: our lines only, the mIoU it promises, its steps in FREM_JAX_COMPILATION_CACHE's cache."""
  # Run from a checkout-like folder named frem_jax with the venv inside it (what `git clone` and the
  # README's install make), so that the libraries' files lie under .../frem_jax/.venv/.
  if sys.prefix == sys.base_prefix:
    pytest.fail(f'this test needs a venv (sys.prefix {sys.prefix} is the base Python\'s): run it as '
                'the README says, from .venv/bin/python')
  checkout = tmp_path / 'frem_jax'
  checkout.mkdir()
  (checkout / '.venv').symlink_to(sys.prefix, target_is_directory=True)
  python = checkout / '.venv' / os.path.relpath(sys.executable, sys.prefix)
  where = 'import importlib.util as u; print(*(u.find_spec(m).origin for m in ("jax", "orbax.checkpoint")))'
  libraries = subprocess.run([python, '-c', where], capture_output=True, text=True, check=True).stdout.split()
  assert all(f.startswith(f'{checkout}/.venv/') for f in libraries), (
      f'the libraries must be seen inside the folder frem_jax ({libraries}); a venv made with '
      '--system-site-packages does not hold them')
  # Every compiled program is written (JAX's 1 s threshold would leave out the smallest steps).
  cache = tmp_path / 'jax_cache'
  env = dict(os.environ, FREM_JAX_COMPILATION_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  # The README's command 1 as it is (its data prepared beside the workdir): it also reaches the
  # test mIoU the README promises (3 classes: chance is about 0.33 or less).
  proc = run_train(f'--config={ROOT}/configs/demo.py', f'--workdir={tmp_path}/run', cwd=checkout,
                   python=python, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  output = proc.stdout + proc.stderr
  ours = {name for _, _, names in os.walk(os.path.join(ROOT, 'frem_jax')) for name in names}
  # absl's records ("W1126 01:13:37.123821 1402 checkpoint_manager.py:1489] ..."), also after a progress bar.
  records = re.findall(r'[IWE]\d{4} [\d:.]+ +\d+ (\S+\.py):\d+\] ([^\r\n]*)', output)
  assert [r for r in records if r[0] not in ours] == []
  assert 'tracked_metric' not in output and 'libtpu' not in output and 'Using custom data' not in output
  assert re.match(r'best epoch \d+: val mIoU', proc.stdout) and 'test IoU per class:' in proc.stdout
  with open(tmp_path / 'run' / 'results.json') as f:
    results = json.load(f)
  assert results['test']['miou'] >= 0.6
  assert all(v is not None and v > 0.4 for v in results['test']['iou_per_class'].values())
  written = os.listdir(cache) if cache.exists() else []
  assert [n for n in written if n.startswith('jit_step-')] and [n for n in written if n.startswith('jit_eval_sums_step-')], written
