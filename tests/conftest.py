"""Shared test settings: small shapes, CPU only, one compilation cache for every process of the suite."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# Most of the suite's time is XLA compiling the same tiny functions again: in every test, in both
# xdist workers and in every command a test starts. JAX's persistent cache compiles each once: set
# here in the environment before JAX is imported, by the controller before its workers start, it is
# inherited by the workers and by every subprocess (our commands leave a JAX_COMPILATION_CACHE_DIR
# set by the user alone). It lives beside pytest's own cache, so a second run starts warm; entries
# are keyed by the program, the compile options and the jax version, so a changed test or library
# misses rather than reusing a stale executable. The size bound turns on JAX's file lock, so that two
# workers never read an entry the other is still writing. Programs that compile in under 0.3 s (the
# ~1 500 tiny eager operations of a run, against ~340 steps and commands' programs) are not written:
# each write lists and stats the whole folder to bound its size, and a cold suite took 6:55 with the
# threshold against 7:29 writing everything (2-core Intel Xeon with AMX, 2026-12-06, one run each;
# warm runs, which now compile those small programs again, were not compared).
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(ROOT, '.pytest_cache', 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')
os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(2 * 1024**3))
