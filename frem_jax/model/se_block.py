"""Squeeze-and-excitation block (Hu et al. 2018)."""

import flax.linen as nn
import jax.numpy as jnp


class SEBlock(nn.Module):
  """Rescales each channel by a gate computed from the global average of all channels.

  squeeze (global average pool) -> Dense(C / reduction) -> ReLU -> Dense(C)
  -> sigmoid -> channel-wise scale.

  The squeeze and the gate are computed in float32 whatever x's dtype: they are
  only N x C values, and in bfloat16 (`half_precision`) each channel's mean and
  its gate would keep 3 significant digits. Only the rescaling runs in x's dtype.

  Attributes:
    reduction: the squeeze ratio r (`model.se_reduction`).
  """
  reduction: int = 16

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    squeezed = jnp.mean(x, axis=(1, 2), dtype=jnp.float32)
    hidden = nn.relu(nn.Dense(max(1, channels // self.reduction), name='squeeze')(squeezed))
    gate = nn.sigmoid(nn.Dense(channels, name='excite')(hidden))
    return x * gate[:, None, None, :].astype(x.dtype)
