"""The entry points' malloc settings make a freed large block get reused instead of re-faulted."""

import os
import subprocess
import sys

# Plain malloc/memset/free, as XLA:CPU allocates (numpy would ask for huge pages).
SCRIPT = r'''
import ctypes, resource
from frem_jax.cpu import malloc
print(malloc.tune_malloc())
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # above glibc's largest mmap threshold (32 MB)
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
'''


def _run(opt_out: bool) -> tuple[str, int]:
  env = dict(os.environ)
  env['FREM_JAX_MALLOC_TUNE'] = '0' if opt_out else '1'
  out = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  return out[0], int(out[1])


def test_freed_block_is_reused_without_page_faults():
  applied, faults = _run(opt_out=False)
  assert applied == 'True'
  assert faults < 100  # 64 MB in 4 KB pages would be 16384 faults


def test_opt_out_leaves_malloc_as_it_is():
  applied, faults = _run(opt_out=True)
  assert applied == 'False'
  assert faults > 10000  # every allocation is a fresh mmap
