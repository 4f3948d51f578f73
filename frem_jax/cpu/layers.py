"""Convolution layers with the same parameters as flax's, in the forms that are fast on our CPU.

`Conv3x3`: the stages' 3x3 convolutions, on this project's XLA:CPU kernels
where they fit (frem_jax/cpu_conv.py), else XLA's.

`Conv1x1`: the class head, as a matrix product.

`UpConv2x2`: the decoder's 2x2 stride-2 transposed convolution, on this
project's XLA:CPU kernel where it fits, else as one matrix product. XLA:CPU
lowers `nn.ConvTranspose` to a convolution of the zero-dilated input, which
took about a third of the paper model's training step on our 2-core CPU
(README, Performance). Each input pixel of a 2x2 stride-2 transposed
convolution writes exactly one 2x2 output block, so the same result is a
matmul [N·H·W, C] x [C, 4·O] and a depth-to-space rearrangement.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from frem_jax import cpu_conv


class Conv3x3(nn.Module):
  """3x3 SAME conv without bias; same parameters and outputs as `nn.Conv(features, (3, 3), use_bias=False)`.

  Attributes:
    features: output channels.
    impl: 'auto', 'xla' or 'cpu_kernel' (`model.conv_impl`, see `cpu_conv.uses_kernel`).
  """
  features: int
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    if cpu_conv.uses_kernel(self.impl, self.features, x.dtype):
      return cpu_conv.conv3x3(x, kernel)
    return cpu_conv.xla_conv3x3(x, kernel)


class Conv1x1(nn.Module):
  """1x1 conv with bias; same parameters and outputs as `nn.Conv(features, (1, 1))`.

  As a matrix product: XLA:CPU computes `nn.Conv`'s kernel gradient as a
  256x256-window convolution of a transposed copy of the input (50 ms of the
  paper model's step at batch 4 for the class head).
  """
  features: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    return jnp.einsum('nhwc,ck->nhwk', x, kernel[0, 0], precision=jax.lax.Precision.HIGHEST) + bias


class UpConv2x2(nn.Module):
  """2x2 stride-2 transposed conv with bias; same parameters and outputs as `nn.ConvTranspose(features, (2, 2), strides=(2, 2))`.

  Attributes:
    features: output channels.
    impl: 'auto', 'xla' or 'cpu_kernel' (`model.conv_impl`): the CPU kernel,
      or one matrix product and a depth-to-space rearrangement.
  """
  features: int
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    n, h, w, c = x.shape
    o = self.features
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (2, 2, c, o), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (o,), jnp.float32)
    if cpu_conv.uses_kernel(self.impl, o, x.dtype):
      return cpu_conv.upconv2x2(x, kernel) + bias
    # nn.ConvTranspose (SAME padding, transpose_kernel=False) gives output offset (a, b) of each
    # 2x2 block the tap kernel[1 - a, 1 - b].
    k2d = jnp.flip(kernel, (0, 1)).transpose(2, 0, 1, 3).reshape(c, 4 * o)
    y = jnp.einsum('nhwc,ck->nhwk', x, k2d, precision=jax.lax.Precision.HIGHEST)
    y = y.reshape(n, h, w, 2, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)
    return y + bias
