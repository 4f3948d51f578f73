"""Builds the optional XLA:CPU convolution kernels (frem_jax/cpu/kernels); everything else is in pyproject.toml."""

import importlib.metadata
import os
import sys

from setuptools import Extension, setup

# -march=native: the kernels are built where they run (pip install from source).
# Set FREM_JAX_CPU_FLAGS to build for another CPU, e.g. "-O3 -mavx2 -mfma".
flags = os.environ.get('FREM_JAX_CPU_FLAGS', '-O3 -march=native').split()


def _wheel_folder(distribution: str, file_name: str):
  """The folder of the file whose path ends in `file_name` among an installed `distribution`'s, or None."""
  try:
    files = importlib.metadata.distribution(distribution).files or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    path = os.path.realpath(f.locate())  # (wheel data files are listed as ../../lib/..., relative)
    if path.endswith(os.sep + file_name):
      return os.path.dirname(path)
  return None


def _onednn():
  """(include folder, library folder) of oneDNN, or None.

  From the wheels onednn-devel-cpu-gomp (headers) and onednn-cpu-gomp
  (libdnnl.so, GNU OpenMP), wherever pip put them (the build's isolated
  environment or the target one: both place include/ and lib/ beside
  Python's lib/); FREM_JAX_ONEDNN_ROOT=PREFIX names another installation
  (PREFIX/include, PREFIX/lib).
  """
  root = os.environ.get('FREM_JAX_ONEDNN_ROOT')
  if root:
    include, lib = os.path.join(root, 'include'), os.path.join(root, 'lib')
  else:
    include = _wheel_folder('onednn-devel-cpu-gomp', 'include/dnnl.hpp')
    lib = _wheel_folder('onednn-cpu-gomp', 'lib/libdnnl.so')
    # pip's isolated build hides the target environment's packages, not its prefix: wheels
    # installed there before this package are found by their place.
    include = include or os.path.join(sys.prefix, 'include')
    lib = lib or os.path.join(sys.prefix, 'lib')
  if not (include and lib and os.path.exists(os.path.join(include, 'oneapi', 'dnnl', 'dnnl.hpp'))
          and os.path.exists(os.path.join(lib, 'libdnnl.so'))):
    return None
  return include, lib


extensions = [Extension(
    'frem_jax.cpu.kernels._kernels',
    sources=['frem_jax/cpu/kernels/conv3x3.cc', 'frem_jax/cpu/kernels/upconv2x2.cc'],
    include_dirs=['frem_jax/cpu/kernels/third_party'],
    depends=['frem_jax/cpu/kernels/simd.h'],
    extra_compile_args=['-std=c++17', '-w', *flags],
    language='c++',
    # Without a C++17 compiler the package still installs; the model then uses XLA's convolutions.
    optional=True,
)]
onednn = _onednn()
if onednn:
  include, lib = onednn
  # libdnnl.so.3 is found at run time from the installed onednn-cpu-gomp wheel (frem_jax/cpu/ffi.py
  # loads it first); the rpath to this environment's lib/ serves a plain dlopen of the module.
  extensions.append(Extension(
      'frem_jax.cpu.kernels._onednn',
      sources=['frem_jax/cpu/kernels/onednn_conv.cc'],
      include_dirs=['frem_jax/cpu/kernels/third_party', include],
      library_dirs=[lib],
      libraries=['dnnl', 'gomp'],  # gomp: omp_set_num_threads (oneDNN's threads)
      runtime_library_dirs=[os.path.join(sys.prefix, 'lib')],
      extra_compile_args=['-std=c++17', '-w', *flags],
      language='c++',
      optional=True,  # without oneDNN's wheels (or a compiler): XLA's 3x3 convolutions (with our weight gradient where built)
  ))

setup(ext_modules=extensions)
