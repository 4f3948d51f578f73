"""Which folder the commands' persistent compilation cache uses, and when JAX's own setting is left alone.

That a command really fills the folder is checked by tests/test_cli.py's first run, and that Ray
trials (each its own process) use it by tests/test_search_ray.py's sweep.
"""

import ast
import io
import os
import subprocess
import sys

import jax
import pytest

from frem_jax import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh_jax_setting(monkeypatch):
  """JAX's cache folder unset for the test and restored after it (so nothing in this process compiles into it)."""
  saved = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
  jax.config.update('jax_compilation_cache_dir', None)
  for name in (compilation_cache.VARIABLE, 'XDG_CACHE_HOME'):
    monkeypatch.delenv(name, raising=False)
  yield monkeypatch
  jax.config.update('jax_compilation_cache_dir', saved[0])
  jax.config.update('jax_enable_compilation_cache', saved[1])


def test_the_variable_names_the_folder(fresh_jax_setting, tmp_path):
  fresh_jax_setting.setenv(compilation_cache.VARIABLE, str(tmp_path / 'cache'))
  assert compilation_cache.use_compilation_cache() == str(tmp_path / 'cache')
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'cache')


def test_unset_it_is_the_users_cache_folder(fresh_jax_setting, tmp_path):
  fresh_jax_setting.setenv('HOME', str(tmp_path / 'home'))
  tag = compilation_cache.cpu_tag()
  assert compilation_cache.use_compilation_cache() == str(tmp_path / 'home' / '.cache' / 'frem_jax' / 'jax' / tag)
  jax.config.update('jax_compilation_cache_dir', None)
  fresh_jax_setting.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compilation_cache.use_compilation_cache() == str(tmp_path / 'xdg' / 'frem_jax' / 'jax' / tag)
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'xdg' / 'frem_jax' / 'jax' / tag)


def test_each_kind_of_cpu_has_its_own_default_folder(monkeypatch):
  tag = compilation_cache.cpu_tag()
  assert tag == compilation_cache.cpu_tag() and tag.startswith('cpu-') and len(tag) == 16
  cpuinfo = 'vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f\n\n'
  real_open = open

  def fake_cpuinfo(text):
    def fake_open(path, *args, **kwargs):
      if path == '/proc/cpuinfo':
        return io.StringIO(text)
      return real_open(path, *args, **kwargs)
    return fake_open

  monkeypatch.setattr('builtins.open', fake_cpuinfo(cpuinfo))
  with_avx512 = compilation_cache.cpu_tag()
  monkeypatch.setattr('builtins.open', fake_cpuinfo(cpuinfo.replace(' avx512f', '')))
  assert compilation_cache.cpu_tag() != with_avx512


def test_off_turns_it_off(fresh_jax_setting):
  fresh_jax_setting.setenv(compilation_cache.VARIABLE, 'off')
  assert compilation_cache.use_compilation_cache() is None
  assert jax.config.jax_compilation_cache_dir is None


def test_a_folder_jax_was_given_is_left_alone(fresh_jax_setting, tmp_path):
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'users'))
  for value in (str(tmp_path / 'ours'), 'off'):
    fresh_jax_setting.setenv(compilation_cache.VARIABLE, value)
    assert compilation_cache.use_compilation_cache() == str(tmp_path / 'users')
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'users')


def test_jax_own_variable_wins_in_a_new_process(tmp_path):
  # JAX reads JAX_COMPILATION_CACHE_DIR into its config on import, before any command runs.
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'users'),
             **{compilation_cache.VARIABLE: str(tmp_path / 'ours')})
  code = 'from frem_jax import compilation_cache as c; print(c.use_compilation_cache())'
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == str(tmp_path / 'users')


def test_chosen_before_jax_loads_the_folder_reaches_jax_through_its_variable(tmp_path):
  # The commands choose the folder before they load JAX (a mistake is refused without it).
  env = dict(os.environ, **{compilation_cache.VARIABLE: str(tmp_path / 'ours')})
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  code = ('import sys; from frem_jax import compilation_cache as c; print(c.use_compilation_cache()); '
          'print("jax" in sys.modules); import jax; print(jax.config.jax_compilation_cache_dir)')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == [str(tmp_path / 'ours'), 'False', str(tmp_path / 'ours')]


def test_the_benchmarks_compile_without_it(fresh_jax_setting, tmp_path):
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'users'))
  compilation_cache.turn_off()
  assert not jax.config.jax_enable_compilation_cache  # JAX's switch: no folder is read or written
  # The commands that report compile seconds ask cli.begin for that.
  for module in ('bench.py', 'population_bench.py'):
    with open(os.path.join(ROOT, 'frem_jax', module)) as f:
      main = next(n for n in ast.parse(f.read()).body if isinstance(n, ast.FunctionDef) and n.name == 'main')
    assert 'cli.begin(argv, times_compiles=True)' in ast.unparse(main), module
