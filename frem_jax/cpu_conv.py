"""3x3 SAME convolutions through this project's XLA:CPU kernels (frem_jax/cpu_kernels/conv3x3.cc).

XLA:CPU's own convolution is slow on the U-Net's narrow high-resolution layers
(32 and 64 channels at 256² and 128²; README, Performance). The kernels are
called through the XLA FFI inside the jitted step; on GPU and TPU, or where the
kernels were not built, the model uses `lax.conv_general_dilated`.
"""

import ctypes
import functools
import importlib.util

import jax
import jax.numpy as jnp

IMPLS = ('auto', 'xla', 'cpu_kernel')
_LIBRARY = 'frem_jax.cpu_kernels._conv3x3'
_FORWARD = 'frem_conv3x3'
_INPUT_GRAD = 'frem_conv3x3_dx'
_WEIGHT_GRAD = 'frem_conv3x3_dw'
_LANES = 16  # the kernels' vector width: output channels must be a multiple of it
_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the compiled kernels are installed; registers them with XLA:CPU on first call."""
  spec = importlib.util.find_spec(_LIBRARY)
  if spec is None or not spec.origin:
    return False
  library = ctypes.CDLL(spec.origin)
  jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(library.FremConv3x3), platform='cpu')
  jax.ffi.register_ffi_target(
      _INPUT_GRAD, jax.ffi.pycapsule(library.FremConv3x3InputGrad), platform='cpu')
  jax.ffi.register_ffi_target(
      _WEIGHT_GRAD, jax.ffi.pycapsule(library.FremConv3x3WeightGrad), platform='cpu')
  return True


def uses_kernel(impl: str, features: int, dtype) -> bool:
  """Whether a conv to `features` channels runs on the CPU kernels under `model.conv_impl=impl`.

  'auto' takes them on the CPU backend when they are built and the layer fits
  them (float32, a multiple of 16 output channels); 'cpu_kernel' insists
  (and fails at trace time where they cannot run); 'xla' never uses them.
  """
  if impl == 'xla':
    return False
  fits = features % _LANES == 0 and jnp.dtype(dtype) == jnp.float32
  if impl == 'cpu_kernel':
    if not available():
      raise RuntimeError("model.conv_impl='cpu_kernel' but the CPU kernels are not built "
                         "(reinstall with a C++17 compiler), use 'auto' or 'xla'")
    if not fits:
      raise ValueError(f"model.conv_impl='cpu_kernel' needs float32 and a multiple of "
                       f"{_LANES} channels, got {features} channels of {jnp.dtype(dtype)}")
    return True
  if impl != 'auto':
    raise ValueError(f'model.conv_impl must be one of {IMPLS}, got {impl!r}')
  return fits and jax.default_backend() == 'cpu' and available()


def xla_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """y = 3x3 SAME convolution of x [N, H, W, C] with kernel [3, 3, C, O], by XLA."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=_DIMENSIONS)


def _forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, _ = x.shape
  out = jax.ShapeDtypeStruct((n, h, w, kernel.shape[3]), jnp.float32)
  return jax.ffi.ffi_call(_FORWARD, out)(x, kernel)


def _input_grad(dy: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, _ = dy.shape
  out = jax.ShapeDtypeStruct((n, h, w, kernel.shape[2]), jnp.float32)
  return jax.ffi.ffi_call(_INPUT_GRAD, out)(dy, kernel)


def _weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  out = jax.ShapeDtypeStruct((3, 3, x.shape[3], dy.shape[3]), jnp.float32)
  return jax.ffi.ffi_call(_WEIGHT_GRAD, out)(x, dy)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The same as `xla_conv3x3`, on the CPU kernels (float32, O a multiple of 16)."""
  return _forward(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _forward(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, dy):
  x, kernel = residuals
  if x.shape[3] % _LANES == 0:
    dx = _input_grad(dy, kernel)
  else:  # e.g. the first layer's 1 or 3 input channels (and usually unused)
    # The input gradient is the convolution of dy with the flipped, transposed kernel.
    dx = xla_conv3x3(dy, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  return dx, _weight_grad(x, dy)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)
