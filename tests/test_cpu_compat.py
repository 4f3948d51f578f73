"""The CPU kernels fall back to XLA's operations, with one log line, where a jaxlib refuses them."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from frem_jax.cpu import compat
from frem_jax.cpu import ffi as cpu_conv
from frem_jax.cpu.layers import Conv

_PROBE = r'''
#include "xla/ffi/api/ffi.h"
namespace ffi = xla::ffi;
static ffi::Error Impl(ffi::Buffer<ffi::F32>, ffi::ResultBuffer<ffi::F32>) { return ffi::Error::Success(); }
XLA_FFI_DEFINE_HANDLER_SYMBOL(Probe, Impl, ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>());
'''

_LOAD_PROBE = r'''
import ctypes, sys
import jax, jax.numpy as jnp
from frem_jax.cpu import compat
def register():
  library = ctypes.CDLL(sys.argv[1])
  jax.ffi.register_ffi_target('frem_probe', jax.ffi.pycapsule(library.Probe), platform='cpu')
print('loaded', compat.load_cpu_kernels(register))
print('cpu still works', float(jnp.arange(4.0).sum()))
'''


@pytest.mark.skipif(shutil.which('g++') is None, reason='needs a C++ compiler')
def test_a_handler_of_an_unsupported_ffi_version_is_refused_in_one_line(tmp_path):
  # A real handler whose headers claim FFI major version 7: XLA refuses it at registration.
  headers = tmp_path / 'include'
  shutil.copytree(jax.ffi.include_dir(), headers)
  c_api = headers / 'xla' / 'ffi' / 'api' / 'c_api.h'
  c_api.write_text(c_api.read_text().replace('#define XLA_FFI_API_MAJOR 0', '#define XLA_FFI_API_MAJOR 7'))
  (tmp_path / 'probe.cc').write_text(_PROBE)
  library = tmp_path / 'probe.so'
  subprocess.run(['g++', '-std=c++17', '-O0', '-w', '-shared', '-fPIC', f'-I{headers}',
                  str(tmp_path / 'probe.cc'), '-o', str(library)], check=True)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = subprocess.run([sys.executable, '-c', _LOAD_PROBE, str(library)], capture_output=True,
                       text=True, env=env, timeout=600, check=True)
  assert run.stdout.splitlines() == ['loaded False', 'cpu still works 6.0']
  said = [line for line in run.stderr.splitlines() if 'frem_jax:' in line]
  assert len(said) == 1, run.stderr
  assert "the CPU kernels cannot be used with jaxlib" in said[0]
  assert "XLA's convolutions are used instead" in said[0]
  assert 'API version (7.' in said[0]  # XLA's own reason, its first line only
  assert 'Traceback' not in run.stderr


def test_an_accepted_registration_is_silent(caplog):
  assert compat.load_cpu_kernels(lambda: None)
  assert not [r for r in caplog.records if 'frem_jax:' in r.getMessage()]


def test_refused_kernels_mean_xla_convolutions(monkeypatch):
  def refuse(register, *names):
    del register, names
    return False
  monkeypatch.setattr(compat, 'load_cpu_kernels', refuse)
  cpu_conv.available.cache_clear()
  cpu_conv._onednn_library.cache_clear()  # pylint: disable=protected-access
  try:
    assert not cpu_conv.available()
    assert not cpu_conv.uses_kernel(32, jnp.float32)
    with pytest.raises(RuntimeError, match='this jaxlib refused them'):
      cpu_conv.upconv2x2(jnp.ones((1, 4, 4, 16)), jnp.ones((2, 2, 16, 16)))
    # The CPU wing's layers then compute with XLA's convolutions.
    y, _ = Conv(16, (3, 3), use_bias=False).init_with_output(jax.random.key(0), jnp.ones((1, 4, 4, 16)))
    assert y.shape == (1, 4, 4, 16)
  finally:
    monkeypatch.undo()
    cpu_conv.available.cache_clear()
    cpu_conv._onednn_library.cache_clear()  # pylint: disable=protected-access
  assert cpu_conv.available()  # registering the kernels again is harmless
