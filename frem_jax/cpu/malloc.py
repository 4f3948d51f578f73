"""glibc malloc settings that let each training step on XLA:CPU reuse the memory the previous one freed.

XLA:CPU allocates each step's working memory afresh (1.3 GB for the paper's
model at 256², batch 4). glibc serves blocks that large from a new mmap, so
every step page-faults and zeroes all of it again: 345k faults and 0.3 s of a
2.2 s step on our CPU (docs/performance.md). `tune_malloc()` turns mmap off
(which, for threads, needs the one main arena) and trimming off, so the freed
block is reused; the process's resident memory then stays at its peak.

The settings change the whole process's allocator for good, so they are
applied only where their reason applies: when the CPU backend will run the
steps. They must come before JAX starts its threads (measured: applied after
the backend started, the faults stay), so the commands apply them first thing
(`cli.begin` -> `tune_malloc_for_cpu`), judging the backend without starting
it: not when JAX_PLATFORMS names another platform or a GPU/TPU plugin of jax
is installed. Library users (a notebook) call `frem_jax.cpu.tune_malloc()`
before their first JAX computation; `frem_jax.build.build_model` logs a
warning once when the CPU backend runs an untuned allocator. Set
FREM_JAX_MALLOC_TUNE=0 to leave malloc as it is.
"""

import ctypes
import importlib.util
import os

from absl import logging

OPT_OUT_VARIABLE = 'FREM_JAX_MALLOC_TUNE'  # set to 0 to leave malloc as it is
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Modules of jax's GPU and TPU backends: where one is installed, the CPU may not run the steps.
_ACCELERATOR_MODULES = ('libtpu', 'jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin',
                        'jax_rocm7_plugin')
_state = {'tuned': False, 'warned': False}


def is_glibc() -> bool:
  """Whether this process runs on GNU libc (Linux), where the settings apply."""
  try:
    return os.confstr('CS_GNU_LIBC_VERSION') is not None
  except (ValueError, OSError, AttributeError):
    return False


def tune_malloc() -> bool:
  """Makes malloc keep freed memory mapped for reuse, unless FREM_JAX_MALLOC_TUNE=0; True if applied (see the module docstring)."""
  if os.environ.get(OPT_OUT_VARIABLE, '1') == '0' or not is_glibc():
    return False
  libc = ctypes.CDLL('libc.so.6')
  _state['tuned'] = bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)
                         and libc.mallopt(_M_ARENA_MAX, 1))
  return _state['tuned']


def is_tuned() -> bool:
  """Whether `tune_malloc` applied the settings in this process."""
  return _state['tuned']


def cpu_backend_expected() -> bool:
  """Whether JAX will run on the CPU, judged without starting JAX (JAX_PLATFORMS, installed plugins)."""
  platforms = [p.strip() for p in os.environ.get('JAX_PLATFORMS', '').split(',') if p.strip()]
  if platforms:
    return platforms[0] == 'cpu'
  return not any(importlib.util.find_spec(m) for m in _ACCELERATOR_MODULES)


def tune_malloc_for_cpu() -> bool:
  """`tune_malloc()` if the CPU backend will run the steps (the commands call it first); True if applied."""
  return cpu_backend_expected() and tune_malloc()


def warn_if_untuned() -> None:
  """Logs once that the CPU backend runs with an untuned allocator (slower steps), and how to tune it."""
  if _state['tuned'] or _state['warned'] or os.environ.get(OPT_OUT_VARIABLE) == '0' or not is_glibc():
    return
  _state['warned'] = True
  logging.warning('XLA:CPU steps page-fault their working memory afresh (about 0.3 s of a 2.2 s '
                  'step): call frem_jax.cpu.tune_malloc() before the first JAX computation, or set '
                  '%s=0 to silence this (docs/performance.md)', OPT_OUT_VARIABLE)
