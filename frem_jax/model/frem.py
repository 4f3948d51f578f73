"""The Feature Random Enhancement Module (FREM)."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def enhancement_scale(key: jax.Array, num_channels: int, num_selected, factor,
                      dtype=jnp.float32) -> jnp.ndarray:
  """Per-channel multipliers: X on B channels drawn without replacement from `key`, 1 elsewhere.

  Args:
    key: PRNG key that decides which channels are enhanced.
    num_channels: C, the number of channels of the feature map.
    num_selected: B (`frem.num_selected`), how many channels to enhance; a
      runtime value (Python or traced integer) in [0, C].
    factor: X (`frem.factor`), the multiplier of the enhanced channels; a
      runtime value.
    dtype: dtype of the result.

  Returns:
    A [C] array.
  """
  selected = selected_channels(key, num_channels, num_selected)
  return jnp.where(selected, jnp.asarray(factor, dtype), jnp.ones((), dtype))


def selected_channels(key: jax.Array, num_channels: int, num_selected) -> jnp.ndarray:
  """The [C] boolean mask of the B (`num_selected`) channels that `key` enhances."""
  order = jax.random.permutation(key, num_channels)
  return jnp.zeros((num_channels,), bool).at[order].set(jnp.arange(num_channels) < num_selected)


class FREM(nn.Module):
  """Multiplies B randomly chosen channels of a feature map by X, in training only.

  Follows `nn.Dropout`: randomness comes from the `rng_collection` stream (or
  an explicit `rng`), and with `deterministic=True` the module is exactly the
  identity. B and X are call arguments, not attributes, so they can change
  between calls without recompiling. The same key selects the same channels
  for every image of the batch; the training loop passes one key per epoch.

  Attributes:
    deterministic: if True, return the input unchanged.
    rng_collection: the rng stream the channel selection is drawn from.
  """
  deterministic: Optional[bool] = None
  rng_collection: str = 'frem'

  @nn.compact
  def __call__(self, x: jnp.ndarray, num_selected, factor,
               deterministic: Optional[bool] = None,
               rng: Optional[jax.Array] = None,
               selected: Optional[jax.Array] = None) -> jnp.ndarray:
    """Enhances B (`num_selected`) channels of `x` [..., C] by X (`factor`).

    `selected`, if given, is the [C] boolean mask of those channels, drawn by
    the caller with `selected_channels`; otherwise they are drawn here.
    """
    deterministic = nn.merge_param('deterministic', self.deterministic, deterministic)
    if deterministic:
      return x
    if selected is None:
      selected = self.draw(x.shape[-1], num_selected, rng)
    # X multiplies in float32, rounded once to x's dtype: bfloat16 (`half_precision`) would
    # store X = 10000 as 9984 before multiplying.
    scale = jnp.where(selected, jnp.asarray(factor, jnp.float32), jnp.ones((), jnp.float32))
    return (x.astype(jnp.float32) * scale).astype(x.dtype)

  def draw(self, num_channels: int, num_selected, rng: Optional[jax.Array] = None) -> jnp.ndarray:
    """The [C] mask of the channels `__call__` enhances: from `rng`, or else from the `rng_collection` stream.

    flax's stream folds this module's place in the network into its key, so the
    channels are those of `selected_channels` on that derived key, not on the
    key given to `apply` (`unet.frem_channels` draws them for the U-Net).
    """
    return selected_channels(rng if rng is not None else self.make_rng(self.rng_collection),
                             num_channels, num_selected)
