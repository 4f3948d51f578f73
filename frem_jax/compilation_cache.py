"""JAX's persistent compilation cache for the commands: a step compiled once serves later processes.

Every command compiles its train and evaluation steps afresh in a new process (seconds each on a
CPU, more at the paper's widths), and so does every Ray Tune trial, each in its own worker process.
With the cache, XLA's executables are written to a folder and a later process with the same
shapes, config and versions loads them instead of compiling (docs/performance.md).

The folder: $FREM_JAX_COMPILATION_CACHE if set, else ${XDG_CACHE_HOME:-~/.cache}/frem_jax/jax/CPU_TAG;
FREM_JAX_COMPILATION_CACHE=off turns it off. Where JAX's own cache folder is already set (JAX's
variable JAX_COMPILATION_CACHE_DIR, or jax.config), that setting is left as it is. JAX's
thresholds stay JAX's (an executable is written if it took >= 1 s to compile;
JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS changes that). The benchmarks, which time compiles,
turn it off (`turn_off`).
"""

import hashlib
import os
import platform
import sys
from typing import Optional

VARIABLE = 'FREM_JAX_COMPILATION_CACHE'
OFF = 'off'
JAX_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'  # JAX's own, read into jax.config when JAX is imported


def cpu_tag() -> str:
  """'cpu-' and a short hash of this CPU's model and instruction-set flags (Linux), or of its machine type.

  JAX's cache key names the device kind ('cpu') but not which CPU: an XLA:CPU executable built for
  AVX-512 would be loaded, and crash, on a machine without it that shares the same home folder
  (a cluster's NFS home, Ray trials on several machines).
  """
  text = f'{platform.machine()} {platform.processor()}'
  try:
    with open('/proc/cpuinfo') as f:
      first = f.read().split('\n\n')[0]
    text = '\n'.join(l for l in first.splitlines() if l.split(':')[0].strip() in ('vendor_id', 'model name', 'flags'))
  except OSError:
    pass
  return 'cpu-' + hashlib.sha256(text.encode()).hexdigest()[:12]


def default_dir() -> str:
  """${XDG_CACHE_HOME:-~/.cache}/frem_jax/jax/CPU_TAG: where the XDG convention puts a user's caches, one
  folder per kind of CPU (`cpu_tag`)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'frem_jax', 'jax', cpu_tag())


def chosen_dir() -> Optional[str]:
  """The folder $FREM_JAX_COMPILATION_CACHE asks for (default_dir() when unset), None for `off`."""
  value = os.environ.get(VARIABLE, '').strip()
  if value.lower() == OFF:
    return None
  return os.path.abspath(os.path.expanduser(value)) if value else default_dir()


def use_compilation_cache() -> Optional[str]:
  """Points JAX's persistent compilation cache at chosen_dir(), unless JAX's own folder is set.

  Call it first thing in a process (`cli.begin` does; so does each Ray trial): what it compiles
  before is not cached. Returns the folder JAX uses, or None when it uses none.
  """
  # A folder JAX was given (its variable, read into jax.config on import, or jax.config itself)
  # is kept, even with FREM_JAX_COMPILATION_CACHE=off.
  jax = sys.modules.get('jax')
  given = jax.config.jax_compilation_cache_dir if jax else os.environ.get(JAX_VARIABLE)
  if given:
    return given
  path = chosen_dir()
  if path and jax:
    jax.config.update('jax_compilation_cache_dir', path)
  elif path:
    # The commands call this before they load JAX (a mistake in a flag is refused without it);
    # JAX reads its variable when it is imported, and so do the processes this one starts.
    os.environ[JAX_VARIABLE] = path
  return path


def turn_off() -> None:
  """No persistent cache in this process, whatever folder is set: for the benchmarks, which report
  compile seconds that an executable loaded from the cache would turn into load seconds."""
  import jax  # pylint: disable=g-import-not-at-top  (this module loads without JAX: use_compilation_cache)
  jax.config.update('jax_enable_compilation_cache', False)
