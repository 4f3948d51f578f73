"""Batch renormalisation (Ioffe 2017) as a Flax linen module."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchRenorm(nn.Module):
  """Batch renormalisation over all axes but the last.

  In training, activations are normalised with the batch statistics and then
  corrected towards the running statistics by r = sigma_B / sigma and
  d = (mu_B - mu) / sigma, clipped to [1/r_max, r_max] and [-d_max, d_max]
  and treated as constants (no gradient flows through r and d). The clipping
  bounds ramp linearly from r_max = 1, d_max = 0 (plain batch norm) at step 0 to
  their final values at `warmup_steps`, because the running statistics are
  meaningless early in training. In inference (`use_running_average=True`) the
  running statistics are used, as in batch norm.

  The running mean/var (updated as `momentum * old + (1 - momentum) * batch`,
  with the biased batch variance) and the step counter live in `batch_stats`.

  Attributes:
    use_running_average: use the running statistics (inference).
    axis_name: name of a mapped axis (pmap/shard_map) to average the batch
      statistics over, so that they are computed on the global batch.
    momentum: decay of the running averages.
    epsilon: added to the variances.
    r_max: final bound of the scale correction r.
    d_max: final bound of the shift correction d.
    warmup_steps: training steps over which r_max and d_max ramp up from 1 and 0.
  """
  use_running_average: Optional[bool] = None
  axis_name: Optional[str] = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  r_max: float = 3.0
  d_max: float = 5.0
  warmup_steps: int = 5000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, use_running_average: Optional[bool] = None) -> jnp.ndarray:
    use_running_average = nn.merge_param(
        'use_running_average', self.use_running_average, use_running_average)
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((features,), jnp.float32))
    steps = self.variable('batch_stats', 'steps', lambda: jnp.zeros((), jnp.int32))
    scale = self.param('scale', nn.initializers.ones, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)

    x32 = x.astype(jnp.float32)
    # Both paths apply one per-channel affine map x * a + b: with the
    # statistics folded into a and b, XLA fuses the map into one pass and its
    # gradient into two (the subtract-then-scale form cost twice as much on our
    # CPU). The float32 rounding it adds grows with |mean| / std of x.
    if use_running_average:
      a = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      b = bias - ra_mean.value * a
    else:
      mean = jnp.mean(x32, axes)
      mean_sq = jnp.mean(jnp.square(x32), axes)
      if self.axis_name is not None and not self.is_initializing():
        mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.axis_name)
      var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
      inv_std = jax.lax.rsqrt(var + self.epsilon)
      running_std = jnp.sqrt(ra_var.value + self.epsilon)
      if self.warmup_steps > 0:
        ramp = jnp.clip(steps.value / self.warmup_steps, 0.0, 1.0)
      else:
        ramp = 1.0
      r_max = 1.0 + (self.r_max - 1.0) * ramp
      d_max = self.d_max * ramp
      r = jax.lax.stop_gradient(jnp.clip(jnp.sqrt(var + self.epsilon) / running_std, 1.0 / r_max, r_max))
      d = jax.lax.stop_gradient(jnp.clip((mean - ra_mean.value) / running_std, -d_max, d_max))
      a = inv_std * r * scale
      b = (d - mean * inv_std * r) * scale + bias
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        steps.value = steps.value + 1
    return (x32 * a + b).astype(self.dtype)
