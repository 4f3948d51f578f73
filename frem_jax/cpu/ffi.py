"""The U-Net's convolutions through this project's XLA:CPU kernels (frem_jax/cpu/kernels).

`conv3x3`: 3x3 SAME convolutions. XLA:CPU's own convolution is slow on the
U-Net's narrow high-resolution layers (32 and 64 channels at 256² and 128²).
`upconv2x2`: the decoder's 2x2 stride-2 transposed convolution, whose
gradient XLA computes through large transposes (docs/performance.md).

The kernels are called through the XLA FFI inside the jitted step; on GPU and
TPU, or where the kernels were not built, the layers use XLA's operations.
"""

import ctypes
import functools
import importlib.metadata
import importlib.util
import os

import jax
import jax.numpy as jnp

from frem_jax.cpu import compat

_LIBRARY = 'frem_jax.cpu.kernels._kernels'
_FORWARD = 'frem_conv3x3'
_WEIGHT_GRAD = 'frem_conv3x3_dw'
_UP = 'frem_upconv2x2'
_UP_INPUT_GRAD = 'frem_upconv2x2_dx'
_UP_KERNEL_GRAD = 'frem_upconv2x2_dk'
_LANES = 16  # the kernels' vector width: output channels must be a multiple of it
_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
# Under jax.vmap (train/population.py: K runs in one step) the kernels run once per member, unrolled: each
# member has its own weights, so the calls cannot be merged into one bigger batch, and XLA's own
# convolutions batched over members (grouped convolutions) were slower on our CPU (docs/population.md).
VMAP_METHOD = 'sequential_unrolled'
NOT_BUILT = ('the CPU kernels are not built in this install (reinstall with a C++17 compiler) or '
             "this jaxlib refused them (see the log); use model.layers='auto' or 'flax'")


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the compiled kernels are installed and this jaxlib accepts them; registers them on first call."""
  spec = importlib.util.find_spec(_LIBRARY)
  if spec is None or not spec.origin:
    return False
  def register():
    library = ctypes.CDLL(spec.origin)
    jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(library.FremConv3x3), platform='cpu')
    jax.ffi.register_ffi_target(
        _WEIGHT_GRAD, jax.ffi.pycapsule(library.FremConv3x3WeightGrad), platform='cpu')
    jax.ffi.register_ffi_target(_UP, jax.ffi.pycapsule(library.FremUpConv2x2), platform='cpu')
    jax.ffi.register_ffi_target(
        _UP_INPUT_GRAD, jax.ffi.pycapsule(library.FremUpConv2x2InputGrad), platform='cpu')
    jax.ffi.register_ffi_target(
        _UP_KERNEL_GRAD, jax.ffi.pycapsule(library.FremUpConv2x2KernelGrad), platform='cpu')
  return compat.load_cpu_kernels(register)  # False, said once, where this jaxlib refuses them


def fits(features: int, dtype) -> bool:
  """Whether a conv to `features` output channels of `dtype` fits the kernels (float32, a multiple of 16)."""
  return features % _LANES == 0 and jnp.dtype(dtype) == jnp.float32


def uses_kernel(features: int, dtype) -> bool:
  """Whether a conv to `features` channels runs on the kernels: it fits, on the CPU backend, where they are built."""
  return fits(features, dtype) and jax.default_backend() == 'cpu' and available()


def _xla_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=_DIMENSIONS)


def _call(target: str, shape: tuple, *args: jax.Array) -> jax.Array:
  if not available():
    raise RuntimeError(NOT_BUILT)
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, jnp.float32),
                          vmap_method=VMAP_METHOD)(*args)


def _forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _call(_FORWARD, x.shape[:3] + (kernel.shape[3],), x, kernel)


def _weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  return _call(_WEIGHT_GRAD, (3, 3, x.shape[3], dy.shape[3]), x, dy)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """y = 3x3 SAME convolution of x [N, H, W, C] with kernel [3, 3, C, O], on the CPU kernels (float32, O a multiple of 16)."""
  return _forward(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _forward(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, dy):
  x, kernel = residuals
  # The input gradient is the convolution of dy with the flipped, transposed kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  if x.shape[3] % _LANES == 0:
    dx = _forward(dy, flipped)
  else:  # e.g. the first layer's 1 or 3 input channels (and usually unused)
    dx = _xla_conv3x3(dy, flipped)
  return dx, _weight_grad(x, dy)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


# oneDNN (frem_jax/cpu/kernels/onednn_conv.cc), built where oneDNN's wheels are installed.
_ONEDNN_LIBRARY = 'frem_jax.cpu.kernels._onednn'
_DNNL_FORWARD = 'frem_dnnl_conv3x3'
_DNNL_INPUT_GRAD = 'frem_dnnl_conv3x3_dx'
_DNNL_WEIGHT_GRAD = 'frem_dnnl_conv3x3_dw'
# The `flags` attribute: bit 0, weights in oneDNN's preferred layout (reordered on every call);
# bit 1, oneDNN picks the algorithm (convolution_auto) instead of direct convolution.
DNNL_PREFERRED_WEIGHTS = 1
DNNL_AUTO = 2
# GNU OpenMP, which oneDNN's wheel uses, reads these when it is loaded. Its threads would
# otherwise spin for a while after each convolution, on cores XLA's threads need.
_OPENMP_DEFAULTS = {'OMP_WAIT_POLICY': 'PASSIVE'}


def _load_libdnnl() -> None:
  """Loads libdnnl.so.3 from the installed onednn-cpu-gomp wheel, so the module finds it anywhere."""
  for name, value in _OPENMP_DEFAULTS.items():
    os.environ.setdefault(name, value)
  try:
    files = importlib.metadata.distribution('onednn-cpu-gomp').files or []
  except importlib.metadata.PackageNotFoundError:
    return  # then the module's rpath (or the system's libdnnl) must serve
  for f in files:
    if f.name == 'libdnnl.so.3':
      ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
      return


@functools.lru_cache(maxsize=None)
def onednn_available() -> bool:
  """Whether the oneDNN convolutions are built and load here; registers them on first call."""
  spec = importlib.util.find_spec(_ONEDNN_LIBRARY)
  if spec is None or not spec.origin:
    return False
  def register():
    _load_libdnnl()
    library = ctypes.CDLL(spec.origin)
    jax.ffi.register_ffi_target(_DNNL_FORWARD, jax.ffi.pycapsule(library.FremDnnlConv3x3),
                                platform='cpu')
    jax.ffi.register_ffi_target(
        _DNNL_INPUT_GRAD, jax.ffi.pycapsule(library.FremDnnlConv3x3InputGrad), platform='cpu')
    jax.ffi.register_ffi_target(
        _DNNL_WEIGHT_GRAD, jax.ffi.pycapsule(library.FremDnnlConv3x3WeightGrad), platform='cpu')
  return compat.load_cpu_kernels(register)


def onednn_info() -> str:
  """oneDNN's version and the ISA it runs on, or '' where it is not available."""
  if not onednn_available():
    return ''
  library = ctypes.CDLL(importlib.util.find_spec(_ONEDNN_LIBRARY).origin)
  library.FremDnnlInfo.restype = ctypes.c_char_p
  return library.FremDnnlInfo().decode()


def _dnnl_call(target, shape, dtype, flags, *args):
  if not onednn_available():
    raise RuntimeError('oneDNN is not built in this install')
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype),
                          vmap_method=VMAP_METHOD)(*args, flags=flags)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def onednn_conv3x3(x: jax.Array, kernel: jax.Array, compute_dtype=None,
                   flags: int = DNNL_PREFERRED_WEIGHTS) -> jax.Array:
  """3x3 SAME convolution of x [N, H, W, C] with kernel [3, 3, C, O] on oneDNN, in x's dtype.

  `compute_dtype` (None: x's) is float32 or bfloat16: x and the kernel are cast
  to it, oneDNN accumulates in float32 and writes x's dtype; the kernel's
  gradient is summed in float32 and returned in the kernel's dtype.
  """
  return _onednn_fwd(x, kernel, compute_dtype, flags)[0]


def _onednn_fwd(x, kernel, compute_dtype, flags):
  dtype = jnp.dtype(compute_dtype or x.dtype)
  xc, kc = x.astype(dtype), kernel.astype(dtype)
  y = _dnnl_call(_DNNL_FORWARD, x.shape[:3] + (kernel.shape[3],), x.dtype, flags, xc, kc)
  # (An empty array carries the kernel's dtype; dy has x's.)
  return y, (xc, kc, jnp.zeros((0,), kernel.dtype))


def _onednn_bwd(compute_dtype, flags, residuals, dy):
  xc, kc, kernel_dtype = residuals
  dyc = dy.astype(xc.dtype)
  dx = _dnnl_call(_DNNL_INPUT_GRAD, xc.shape, dy.dtype, flags, dyc, kc)
  dk = _dnnl_call(_DNNL_WEIGHT_GRAD, kc.shape, jnp.float32, flags, xc, dyc)
  return dx, dk.astype(kernel_dtype.dtype)


onednn_conv3x3.defvjp(_onednn_fwd, _onednn_bwd)


@jax.custom_vjp
def upconv2x2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """2x2 stride-2 transposed conv of x [N, H, W, C] -> [N, 2H, 2W, O], no bias, on the CPU kernels.

  `kernel` [2, 2, C, O] is laid out as `nn.ConvTranspose`'s (SAME padding):
  output offset (a, b) of each 2x2 block takes the tap kernel[1 - a, 1 - b].
  Needs float32 and O a multiple of 16.
  """
  n, h, w, _ = x.shape
  return _call(_UP, (n, 2 * h, 2 * w, kernel.shape[3]), x, jnp.flip(kernel, (0, 1)))


def _upconv2x2_fwd(x, kernel):
  return upconv2x2(x, kernel), (x, kernel)


def _upconv2x2_bwd(residuals, dy):
  x, kernel = residuals
  n, h, w, c = x.shape
  by_offset = jnp.flip(kernel, (0, 1))
  if c % _LANES == 0:
    dx = _call(_UP_INPUT_GRAD, x.shape, dy, by_offset.transpose(0, 1, 3, 2))
  else:
    blocks = dy.reshape(n, h, 2, w, 2, -1)
    dx = jnp.einsum('nhawbo,abco->nhwc', blocks, by_offset,
                    precision=jax.lax.Precision.HIGHEST)
  dk = _call(_UP_KERNEL_GRAD, kernel.shape, x, dy)
  return dx, jnp.flip(dk, (0, 1))


upconv2x2.defvjp(_upconv2x2_fwd, _upconv2x2_bwd)
