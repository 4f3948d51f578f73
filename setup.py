"""Builds the optional XLA:CPU convolution kernels (frem_jax/cpu/kernels); everything else is in pyproject.toml."""

import os

from setuptools import Extension, setup

# -march=native: the kernels are built where they run (pip install from source).
# Set FREM_JAX_CPU_FLAGS to build for another CPU, e.g. "-O3 -mavx2 -mfma".
flags = os.environ.get('FREM_JAX_CPU_FLAGS', '-O3 -march=native').split()

setup(ext_modules=[Extension(
    'frem_jax.cpu.kernels._kernels',
    sources=['frem_jax/cpu/kernels/conv3x3.cc', 'frem_jax/cpu/kernels/upconv2x2.cc'],
    include_dirs=['frem_jax/cpu/kernels/third_party'],
    depends=['frem_jax/cpu/kernels/simd.h'],
    extra_compile_args=['-std=c++17', '-w', *flags],
    language='c++',
    # Without a C++17 compiler the package still installs; the model then uses XLA's convolutions.
    optional=True,
)])
