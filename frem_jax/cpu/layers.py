"""Drop-in layers for `UNetSE` that are fast on XLA:CPU: flax's parameters and outputs, other arithmetic.

`Conv` for `nn.Conv` (stride 1, SAME): the stages' 3x3 convolutions on
oneDNN (`ffi.conv3x3_plan`: oneDNN's forward and input gradient; the weight
gradient our XLA:CPU kernel's on AMD's CPUs with AVX-512, oneDNN's
elsewhere), else XLA's (with our weight gradient where it was built for
AVX-512); a
1x1 convolution (the class head) as a matrix product: XLA:CPU computes
`nn.Conv`'s kernel gradient as a 256x256-window convolution of a transposed
copy of the input (50 ms of the paper model's step at batch 4).

`ConvTranspose` for `nn.ConvTranspose` with a 2x2 kernel and stride 2 (who
computes it: `ffi.upconv2x2_plan`): the CPU kernel where it fits (float32; in
bfloat16 oneDNN's), else one matrix product. In float32 our kernel stays where
it was built for AVX-512: oneDNN's took 63 ms where ours took 57 on an AMD EPYC,
48 against 50 on an Intel Xeon (the paper model's four, forward and backward,
batch 4; docs/performance.md); built for AVX2 alone, ours took 14x oneDNN's, so
there, where oneDNN is installed, oneDNN computes float32 too. XLA:CPU lowers
`nn.ConvTranspose` to a convolution of the zero-dilated input, which took about
a third of the paper model's training step on our 2-core CPU
(docs/performance.md). Each input pixel of a 2x2 stride-2 transposed
convolution writes exactly one 2x2 output block, so the same result is a
matmul [N·H·W, C] x [C, 4·O] and a depth-to-space rearrangement.

`max_pool` for `nn.max_pool`: a 2x2 stride-2 window as a reshape and a max.

Dtypes as flax's: `dtype` is the computation's (None: promoted from the input
and the float32 parameters), parameters are float32. The C++ kernels compute
float32 only (`ffi.fits`); a bfloat16 3x3 or transposed convolution runs on
oneDNN where it computes bfloat16, other bfloat16 layers on XLA's operations.

`LAYERS` is the bundle `build_model` passes to `UNetSE`; `LAYERS_HALF` its
`half_precision` on the CPU (bfloat16 3x3 and transposed convolutions on oneDNN,
float32 elsewhere).
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
from flax.linen import dtypes
import jax
import jax.numpy as jnp

from frem_jax.cpu import ffi


class Conv(nn.Module):
  """Stride-1 SAME convolution with `nn.Conv`'s parameters (`kernel` [kh, kw, C, O], optional `bias`).

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    use_bias: add a bias, as `nn.Conv`.
    dtype: the computation's dtype, as `nn.Conv`'s (None: promoted from the
      input's and the parameters').
    conv_dtype: the dtype a 3x3 convolution multiplies in, inside the layer
      (None: `dtype`'s). bfloat16 in a float32 layer: oneDNN's bfloat16
      convolution with float32 inputs and outputs (`LAYERS_HALF`); where
      oneDNN does not compute it (`ffi.conv3x3_plan` None: not built, no
      bfloat16 on this CPU, `kernels` False), the layer's `dtype`.
    kernels: use oneDNN and the C++ kernels where they fit (False: XLA's
      convolution; the tests compare both).
    implementation: of the 3x3 convolutions where `kernels`: 'auto' (the
      fastest measured, part by part), 'onednn', 'kernel' (our weight
      gradient wherever it is built), 'xla' or
      'onednn_bf16' (`ffi.conv3x3_plan`; for benchmarks and tests).
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  use_bias: bool = True
  dtype: Any = None
  conv_dtype: Any = None
  kernels: bool = True
  implementation: str = 'auto'

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kh, kw = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features), jnp.float32)
    bias = (self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
            if self.use_bias else None)
    x, kernel, bias = dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if (kh, kw) == (1, 1):
      y = jnp.einsum('nhwc,ck->nhwk', x, kernel[0, 0], precision=jax.lax.Precision.HIGHEST)
    elif (kh, kw) == (3, 3) and self.kernels and (plan := ffi.conv3x3_plan(
        x.shape[-1], self.features, self.conv_dtype or x.dtype, self.implementation)):
      y = ffi.planned_conv3x3(x, kernel, plan)
    else:
      y = ffi.xla_conv(x, kernel)
    return y if bias is None else y + bias


class ConvTranspose(nn.Module):
  """2x2 stride-2 transposed conv with bias; same parameters and outputs as `nn.ConvTranspose(features, (2, 2), strides=(2, 2))`.

  Attributes:
    features: output channels.
    kernel_size, strides: (2, 2) each, the only shape it computes.
    dtype: the computation's dtype, as `nn.ConvTranspose`'s (None: promoted).
    conv_dtype: the dtype it multiplies in, inside the layer (None: `dtype`'s).
      bfloat16 in a float32 layer: oneDNN's bfloat16 transposed convolution
      with float32 inputs and outputs (`LAYERS_HALF`), where oneDNN computes
      bfloat16 on this CPU; elsewhere the layer's `dtype`.
    kernels: use the C++ kernel or oneDNN where `ffi.upconv2x2_plan` says
      (False: one matrix product).
  """
  features: int
  kernel_size: Sequence[int] = (2, 2)
  strides: Optional[Sequence[int]] = (2, 2)
  dtype: Any = None
  conv_dtype: Any = None
  kernels: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if tuple(self.kernel_size) != (2, 2) or tuple(self.strides or ()) != (2, 2):
      raise ValueError(f'ConvTranspose computes 2x2 kernels of stride 2, got kernel_size='
                       f'{self.kernel_size}, strides={self.strides}; use nn.ConvTranspose')
    n, h, w, c = x.shape
    o = self.features
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (2, 2, c, o), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (o,), jnp.float32)
    x, kernel, bias = dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    plan, multiply = None, jnp.dtype(self.conv_dtype or x.dtype)
    if self.kernels:
      plan = ffi.upconv2x2_plan(o, multiply)
      if plan is None and multiply != x.dtype:  # no bfloat16 on this CPU: the layer's dtype
        multiply = x.dtype
        plan = ffi.upconv2x2_plan(o, multiply)
    if plan == 'onednn':
      return ffi.onednn_upconv2x2(x, kernel, multiply) + bias
    if plan == 'kernel' and x.dtype == jnp.float32:  # our kernel takes float32 in and out
      return ffi.upconv2x2(x, kernel) + bias
    # nn.ConvTranspose (SAME padding, transpose_kernel=False) gives output offset (a, b) of each
    # 2x2 block the tap kernel[1 - a, 1 - b].
    k2d = jnp.flip(kernel, (0, 1)).transpose(2, 0, 1, 3).reshape(c, 4 * o)
    y = jnp.einsum('nhwc,ck->nhwk', x, k2d, precision=jax.lax.Precision.HIGHEST)
    y = y.reshape(n, h, w, 2, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)
    return y + bias


def max_pool(x: jnp.ndarray, window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
             padding: str = 'VALID') -> jnp.ndarray:
  """`nn.max_pool`; a 2x2 stride-2 window of [N, H, W, C] (H, W even) as a reshape and a max.

  The gradient of `nn.max_pool` (reduce_window) builds four index arrays of
  the input's size, which cost about 0.25 s of the paper model's training step
  on our CPU. Where a window holds equal maxima, this gradient is shared among
  them instead of given to one; after ReLU those are zeros, whose gradient
  ReLU stops either way.
  """
  n, h, w, c = x.shape
  if (tuple(window_shape) != (2, 2) or tuple(strides or ()) != (2, 2) or padding != 'VALID'
      or h % 2 or w % 2):
    return nn.max_pool(x, window_shape, strides=strides, padding=padding)
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


# The layer attributes of `UNetSE` (`frem_jax.build.build_model`).
LAYERS = {'conv': Conv, 'conv_transpose': ConvTranspose, 'max_pool': max_pool}

# `half_precision` on the CPU where oneDNN is built: the convolutions multiply in bfloat16 on
# oneDNN, everything else stays float32 (the policy of PyTorch's `autocast` on the CPU). A model
# in bfloat16 throughout was no faster than float32 here: XLA:CPU computes bfloat16 element-wise
# operations, normalisation and matrix products by converting to float32 and back (train step,
# paper model, batch 4: float32 0.81 s, bfloat16 throughout 0.81 s, bfloat16 convolutions 0.53 s;
# docs/performance.md).
# The transposed convolutions too (autocast's list has them): on oneDNN in bfloat16 the decoder's
# four took 33 ms forward and backward, on our float32 kernel 57 ms (launch/bench_conv_layers.py
# --layer=upconv2x2, paper model, batch 4; docs/performance.md).
LAYERS_HALF = {**LAYERS, 'conv': functools.partial(Conv, conv_dtype=jnp.bfloat16),
               'conv_transpose': functools.partial(ConvTranspose, conv_dtype=jnp.bfloat16)}


def conv_dtype(conv) -> Any:
  """The `conv_dtype` a model's `conv` attribute (`Conv` or a partial of it) multiplies in; None: its dtype's."""
  return getattr(conv, 'keywords', {}).get('conv_dtype')


def is_cpu_conv(conv) -> bool:
  """Whether a model's `conv` attribute is this wing's `Conv` (or a partial of it)."""
  return getattr(conv, 'func', conv) is Conv
