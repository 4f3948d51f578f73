"""The U-Net's convolutions through this project's XLA:CPU kernels and oneDNN (frem_jax/cpu/kernels).

`planned_conv3x3`: 3x3 SAME convolutions whose forward pass and input
gradient run on oneDNN or XLA and whose weight gradient runs on oneDNN, on our
kernel or on XLA (`conv3x3_plan` picks; `onednn_conv3x3` is oneDNN's alone,
also in bfloat16). XLA:CPU's own convolution is slow on the U-Net's narrow
high-resolution layers (32 and 64 channels at 256² and 128²).
`upconv2x2`: the decoder's 2x2 stride-2 transposed convolution, whose
gradient XLA computes through large transposes (docs/performance.md);
`onednn_upconv2x2` oneDNN's, used in bfloat16, and in float32 where our
kernels were not built for AVX-512 (`upconv2x2_plan`).

They are called through the XLA FFI inside the jitted step; on GPU and TPU,
or where neither was built, the layers use XLA's operations.
"""

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
from typing import NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp

from frem_jax.cpu import compat

_LIBRARY = 'frem_jax.cpu.kernels._kernels'
_WEIGHT_GRAD = 'frem_conv3x3_dw'
_UP = 'frem_upconv2x2'
_UP_INPUT_GRAD = 'frem_upconv2x2_dx'
_UP_KERNEL_GRAD = 'frem_upconv2x2_dk'
_LANES = 16  # the kernels' vector width: output channels must be a multiple of it
DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')  # our layout: images NHWC, kernels HWIO
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
    jax.ffi.register_ffi_target(
        _WEIGHT_GRAD, jax.ffi.pycapsule(library.FremConv3x3WeightGrad), platform='cpu')
    jax.ffi.register_ffi_target(_UP, jax.ffi.pycapsule(library.FremUpConv2x2), platform='cpu')
    jax.ffi.register_ffi_target(
        _UP_INPUT_GRAD, jax.ffi.pycapsule(library.FremUpConv2x2InputGrad), platform='cpu')
    jax.ffi.register_ffi_target(
        _UP_KERNEL_GRAD, jax.ffi.pycapsule(library.FremUpConv2x2KernelGrad), platform='cpu')
  return compat.load_cpu_kernels(register)  # False, said once, where this jaxlib refuses them


def built_for_avx512() -> bool:
  """Whether the kernels are available and were built for AVX-512, the vector registers their tiles were written for.

  Built for AVX2 alone (`-march=native` on a CPU without AVX-512) they spill
  registers in every tile: 11-21x slower than oneDNN's convolutions on an AMD
  EPYC (Zen 3), part by part (docs/performance.md). The 'auto' plans then
  leave them out where oneDNN is built (`conv3x3_plan`, `upconv2x2_plan`),
  and the 3x3 convolutions go to XLA's where it is not (`conv3x3_plan`: the
  paper model's train step 2.87 s with XLA's against 16.41 s with ours).
  """
  return available() and _library_built_for_avx512()


@functools.lru_cache(maxsize=None)
def _library_built_for_avx512() -> bool:
  library = ctypes.CDLL(importlib.util.find_spec(_LIBRARY).origin)
  if not hasattr(library, 'FremKernelsAvx512'):  # built before it existed: its tiles unknown
    logging.warning('frem_jax: the CPU kernels were built by an older frem_jax; oneDNN is used instead '
                    "where installed, XLA's 3x3 convolutions elsewhere (reinstall frem_jax, "
                    "pip install -e ., to rebuild them)")
    return False
  return bool(library.FremKernelsAvx512())


def fits(features: int, dtype) -> bool:
  """Whether a conv to `features` output channels of `dtype` fits the kernels (float32, a multiple of 16)."""
  return features % _LANES == 0 and jnp.dtype(dtype) == jnp.float32


def uses_kernel(features: int, dtype) -> bool:
  """Whether a conv to `features` channels runs on the kernels: it fits, on the CPU backend, where they are built."""
  return fits(features, dtype) and jax.default_backend() == 'cpu' and available()


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's stride-1 'SAME' convolution in our layout (DIMENSIONS): what flax's nn.Conv computes."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMENSIONS)


def _call(target: str, shape: tuple, *args: jax.Array) -> jax.Array:
  if not available():
    raise RuntimeError(NOT_BUILT)
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, jnp.float32),
                          vmap_method=VMAP_METHOD)(*args)


def _weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  return _call(_WEIGHT_GRAD, (3, 3, x.shape[3], dy.shape[3]), x, dy)


# oneDNN (frem_jax/cpu/kernels/onednn_conv.cc), built where oneDNN's wheels are installed.
_ONEDNN_LIBRARY = 'frem_jax.cpu.kernels._onednn'
_DNNL_FORWARD = 'frem_dnnl_conv3x3'
_DNNL_INPUT_GRAD = 'frem_dnnl_conv3x3_dx'
_DNNL_WEIGHT_GRAD = 'frem_dnnl_conv3x3_dw'
_DNNL_UP = 'frem_dnnl_upconv2x2'
_DNNL_UP_INPUT_GRAD = 'frem_dnnl_upconv2x2_dx'
_DNNL_UP_WEIGHT_GRAD = 'frem_dnnl_upconv2x2_dw'
# GNU OpenMP, which oneDNN's wheel uses, reads this when it is loaded. Its threads would
# otherwise spin after each convolution on the cores XLA's threads need (fwd+bwd at
# 256²x16->16 took 2.5x as long with OMP_WAIT_POLICY=ACTIVE on our 2 cores).
_OPENMP_DEFAULTS = {'OMP_WAIT_POLICY': 'PASSIVE'}
ONEDNN_NOT_BUILT = ('oneDNN is not built in this install (install the onednn-cpu-gomp and '
                    'onednn-devel-cpu-gomp wheels, then reinstall frem_jax)')


def _load_libdnnl() -> None:
  """Loads libdnnl.so.3 from the installed onednn-cpu-gomp wheel, so the module finds it anywhere."""
  for name, value in _OPENMP_DEFAULTS.items():
    os.environ.setdefault(name, value)
  try:
    files = importlib.metadata.distribution('onednn-cpu-gomp').files or []
  except importlib.metadata.PackageNotFoundError:
    return  # then the module's rpath (or a system libdnnl) must serve
  for f in files:
    if f.name == 'libdnnl.so.3':
      ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
      return


@functools.lru_cache(maxsize=None)
def _onednn_library():
  """The loaded oneDNN module with its FFI targets registered, or None."""
  spec = importlib.util.find_spec(_ONEDNN_LIBRARY)
  if spec is None or not spec.origin:
    return None
  try:
    _load_libdnnl()
    library = ctypes.CDLL(spec.origin)
  except OSError:
    # Built, but oneDNN's library (the onednn-cpu-gomp wheel) or GNU OpenMP is not installed:
    # the plans are those of an install without oneDNN (`conv3x3_plan`, `upconv2x2_plan`).
    return None
  def register():
    for target, symbol in ((_DNNL_FORWARD, 'FremDnnlConv3x3'),
                           (_DNNL_INPUT_GRAD, 'FremDnnlConv3x3InputGrad'),
                           (_DNNL_WEIGHT_GRAD, 'FremDnnlConv3x3WeightGrad'),
                           (_DNNL_UP, 'FremDnnlUpconv2x2'),
                           (_DNNL_UP_INPUT_GRAD, 'FremDnnlUpconv2x2InputGrad'),
                           (_DNNL_UP_WEIGHT_GRAD, 'FremDnnlUpconv2x2WeightGrad')):
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                  platform='cpu')
  loaded = compat.load_cpu_kernels(register, 'oneDNN', "the project's kernels or XLA's convolutions")
  return library if loaded else None


def onednn_available() -> bool:
  """Whether the oneDNN convolutions are built and load here; registers them on first call."""
  return _onednn_library() is not None


@functools.lru_cache(maxsize=None)
def onednn_bfloat16_available() -> bool:
  """Whether oneDNN is available and computes bfloat16 convolutions on this CPU (AVX-512 or AVX2-VNNI-2 and up)."""
  library = _onednn_library()
  return library is not None and bool(library.FremDnnlBf16())


def onednn_info() -> str:
  """oneDNN's version and the ISA it runs on (dnnl::cpu_isa's value), or '' where it is not available."""
  library = _onednn_library()
  if library is None:
    return ''
  library.FremDnnlInfo.restype = ctypes.c_char_p
  return library.FremDnnlInfo().decode()


def onednn_threads() -> int:
  """The OpenMP team size of the latest oneDNN call (0 before any): XLA's intra-op pool's."""
  library = _onednn_library()
  return library.FremDnnlThreads() if library is not None else 0


def _dnnl_call(target: str, shape: tuple, dtype, *args: jax.Array) -> jax.Array:
  if not onednn_available():
    raise RuntimeError(ONEDNN_NOT_BUILT)
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype),
                          vmap_method=VMAP_METHOD)(*args)


class Plan(NamedTuple):
  """Who computes each part of a 3x3 convolution: 'onednn' or 'xla', and for the weight gradient also 'kernel' (ours).

  `dtype`: 'float32', or 'bfloat16' (oneDNN only): x and the kernel are cast to
  it inside the convolution; the output has x's dtype, the kernel's gradient
  is summed in float32 and returned in the kernel's.
  """
  forward: str
  input_grad: str
  weight_grad: str
  dtype: str = 'float32'


def _flipped(kernel):
  # The input gradient is the convolution of dy with the flipped, transposed kernel.
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def planned_conv3x3(x: jax.Array, kernel: jax.Array, plan: Plan) -> jax.Array:
  """y = 3x3 SAME convolution of x [N, H, W, C] with kernel [3, 3, C, O], its parts computed as `plan` says."""
  return _planned_fwd(x, kernel, plan)[0]


def _planned_fwd(x, kernel, plan):
  xc, kc = x.astype(plan.dtype), kernel.astype(plan.dtype)
  if plan.forward == 'onednn':
    y = _dnnl_call(_DNNL_FORWARD, x.shape[:3] + (kernel.shape[3],), x.dtype, xc, kc)
  else:
    y = xla_conv(xc, kc).astype(x.dtype)
  # An empty array carries the kernel's dtype (dy has x's).
  return y, (xc, kc, jnp.zeros((0,), kernel.dtype))


def _planned_bwd(plan, residuals, dy):
  xc, kc, kernel_dtype = residuals
  dyc = dy.astype(xc.dtype)
  if plan.input_grad == 'onednn':
    dx = _dnnl_call(_DNNL_INPUT_GRAD, xc.shape, dy.dtype, dyc, kc)
  else:
    dx = xla_conv(dyc, _flipped(kc)).astype(dy.dtype)
  if plan.weight_grad == 'onednn':
    dk = _dnnl_call(_DNNL_WEIGHT_GRAD, kc.shape, jnp.float32, xc, dyc)
  elif plan.weight_grad == 'kernel':
    dk = _weight_grad(xc, dyc)
  else:
    dk = jax.vjp(lambda k: xla_conv(xc, k), kc)[1](dyc)[0]
  return dx, dk.astype(kernel_dtype.dtype)


planned_conv3x3.defvjp(_planned_fwd, _planned_bwd)


def onednn_conv3x3(x: jax.Array, kernel: jax.Array, compute_dtype=None) -> jax.Array:
  """y = 3x3 SAME convolution of x [N, H, W, C] with kernel [3, 3, C, O], all on oneDNN, in x's dtype.

  `compute_dtype` (None: x's): float32 or bfloat16, see `Plan`.
  """
  dtype = jnp.dtype(compute_dtype or x.dtype).name
  return planned_conv3x3(x, kernel, Plan('onednn', 'onednn', 'onednn', dtype))


# `auto`: measured part by part on the U-Net's layers at 256², batch 4 (launch/bench_conv_layers.py
# --per_op, docs/performance.md): oneDNN's forward and input gradient took 8-33 % less time than
# the direct kernels this project had for them (removed 2026-12-08) in sum over the model's layers on
# AMD EPYCs (Zen 4 and 5) and about 50 % less on an Intel Xeon with AMX; oneDNN 3.2's float32
# weight gradient (its `jit:avx512_core` kernel on both) took 10-33 % more than ours on the EPYCs
# (Zen 4: 616 against 562 ms) but 29 % less on the Xeon (298 against 419 ms; train step 1.10
# against 1.22 s). So our weight gradient is kept on AMD's CPUs with AVX-512 alone. On an AMD EPYC
# without AVX-512 (Zen 3, AVX2) ours took 11x oneDNN's time (4003 against 349 ms, widths 16-512),
# so there, and on any CPU our kernels were not built for AVX-512 (`built_for_avx512`), every part
# is oneDNN's. oneDNN is a dependency on Linux x86_64; elsewhere the forward pass and input
# gradient are XLA's, with our weight gradient where it was built for AVX-512.
IMPLEMENTATIONS = ('auto', 'onednn', 'kernel', 'xla', 'onednn_bf16')
KERNEL_WEIGHT_GRAD_VENDORS = ('AuthenticAMD',)


@functools.lru_cache(maxsize=None)
def cpu_vendor() -> str:
  """This CPU's vendor_id from /proc/cpuinfo ('GenuineIntel', 'AuthenticAMD', ...); '' where there is none."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'vendor_id':
          return value.strip()
  except OSError:
    pass
  return ''


def conv3x3_plan(c_in: int, c_out: int, dtype, implementation: str = 'auto') -> Optional[Plan]:
  """The plan of a 3x3 conv of `c_in` -> `c_out` channels of `dtype` here; None: XLA's convolution alone.

  `implementation`: 'auto' (part by part the fastest built: oneDNN's forward
  and input gradient, else XLA's; our weight gradient on AMD's CPUs with
  AVX-512, `KERNEL_WEIGHT_GRAD_VENDORS`, `built_for_avx512`, and without
  oneDNN where it was built for AVX-512, else oneDNN's, else XLA's),
  'onednn', 'kernel' (float32: our weight gradient wherever it is built and
  fits, else oneDNN's; the forward pass and input gradient as 'auto'), 'xla',
  or 'onednn_bf16' (all on oneDNN in bfloat16; not float32-exact). Where
  oneDNN is not available, its parts go to XLA. A bfloat16 convolution
  (`half_precision`) runs all on oneDNN ('auto', 'onednn'), else on XLA
  ('kernel': our kernel is float32 only). Off the CPU backend, or for other dtypes, always None. `c_in` is
  not constrained: oneDNN takes any channel counts, our weight gradient any
  input channels.
  """
  del c_in  # every part here takes any input channel count
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'conv3x3 implementation {implementation!r}: one of {IMPLEMENTATIONS}')
  dtype = jnp.dtype(dtype)
  if dtype not in (jnp.float32, jnp.bfloat16) or jax.default_backend() != 'cpu':
    return None
  onednn = implementation != 'xla' and onednn_available()
  if implementation == 'onednn_bf16' or dtype == jnp.bfloat16:
    onednn = onednn and onednn_bfloat16_available() and implementation != 'kernel'
    # In bfloat16 oneDNN's weight gradient too: in the CPU wing's half precision (bfloat16
    # convolutions in a float32 model) the train step took 0.56 s with it, 0.60 s with ours in
    # float32 (paper model, batch 4; demo: 0.023 / 0.024 s). In a model in bfloat16 throughout it
    # was up to 50x slower than its forward on small images (8² x 64 -> 64: 67 ms a call), but that
    # model uses the wing only without oneDNN (`build.cpu_half_precision`).
    return Plan('onednn', 'onednn', 'onednn', 'bfloat16') if onednn else None
  ours_built = fits(c_out, dtype) and available()
  if implementation == 'kernel':
    ours = ours_built
  elif implementation == 'auto':
    # Built for AVX2 alone our tiles spill (11x oneDNN's time on a Zen 3); without oneDNN there
    # XLA's weight gradient is left.
    ours = ours_built and built_for_avx512() and (
        not onednn or cpu_vendor() in KERNEL_WEIGHT_GRAD_VENDORS)
  else:
    ours = False
  part = 'onednn' if onednn else 'xla'
  plan = Plan(part, part, 'kernel' if ours else part)
  return None if plan == Plan('xla', 'xla', 'xla') else plan


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


def upconv2x2_plan(features: int, dtype) -> Optional[str]:
  """Who computes a 2x2 stride-2 transposed conv to `features` channels multiplying in `dtype` here.

  'onednn' (`onednn_upconv2x2` in `dtype`): bfloat16 where oneDNN computes it,
  and float32 where our kernels were not built for AVX-512 (there ours took
  524 ms forward and backward against oneDNN's 37 ms, the decoder's four
  at batch 4, widths 16-512, on an AMD EPYC Zen 3; also where our kernels are
  not built at all); 'kernel' (`upconv2x2`): float32 where it
  fits (with AVX-512 ours took 57 ms against oneDNN's 63 on an AMD EPYC, 50
  against 48 on an Intel Xeon); None: neither (the layer's matrix product).
  """
  dtype = jnp.dtype(dtype)
  if jax.default_backend() != 'cpu':
    return None
  if dtype == jnp.bfloat16:
    return 'onednn' if onednn_bfloat16_available() else None
  if dtype != jnp.float32:
    return None
  if onednn_available() and not built_for_avx512():
    return 'onednn'
  return 'kernel' if uses_kernel(features, dtype) else None


def onednn_upconv2x2(x: jax.Array, kernel: jax.Array, compute_dtype=None) -> jax.Array:
  """`upconv2x2` on oneDNN's transposed convolution, in x's dtype.

  `compute_dtype` (None: x's): float32 or bfloat16, as `onednn_conv3x3`'s:
  x and the kernel are cast to it inside; the kernel's gradient is summed in
  float32 and returned in the kernel's dtype.
  """
  return _onednn_upconv2x2(x, kernel, jnp.dtype(compute_dtype or x.dtype).name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _onednn_upconv2x2(x, kernel, compute_dtype: str):
  return _onednn_upconv2x2_fwd(x, kernel, compute_dtype)[0]


def _onednn_upconv2x2_fwd(x, kernel, compute_dtype):
  n, h, w, _ = x.shape
  xc, by_offset = x.astype(compute_dtype), jnp.flip(kernel, (0, 1)).astype(compute_dtype)
  y = _dnnl_call(_DNNL_UP, (n, 2 * h, 2 * w, kernel.shape[3]), x.dtype, xc, by_offset)
  # An empty array carries the kernel's dtype (dy has x's).
  return y, (xc, by_offset, jnp.zeros((0,), kernel.dtype))


def _onednn_upconv2x2_bwd(compute_dtype, residuals, dy):
  xc, by_offset, kernel_dtype = residuals
  dyc = dy.astype(compute_dtype)
  dx = _dnnl_call(_DNNL_UP_INPUT_GRAD, xc.shape, dy.dtype, dyc, by_offset)
  dk = _dnnl_call(_DNNL_UP_WEIGHT_GRAD, by_offset.shape, jnp.float32, xc, dyc)
  return dx, jnp.flip(dk, (0, 1)).astype(kernel_dtype.dtype)


_onednn_upconv2x2.defvjp(_onednn_upconv2x2_fwd, _onednn_upconv2x2_bwd)
