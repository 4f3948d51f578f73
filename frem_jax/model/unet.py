"""U-Net with a squeeze-and-excitation block per stage, FREM and an optional SuperVision head."""

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from frem_jax.model.batch_renorm import BatchRenorm
from frem_jax.model.frem import FREM
from frem_jax.model.se_block import SEBlock

ModuleDef = Any


class Enhancement(NamedTuple):
  """Runtime FREM values: B (`frem.num_selected`) and X (`frem.factor`).

  channels: the [C] boolean mask of the enhanced channels when the caller drew
  them (`frem.selected_channels`); None: drawn from the 'frem' rng stream.
  """
  num_selected: jax.Array
  factor: jax.Array
  channels: Optional[jax.Array] = None


class _FremPlace(nn.Module):
  """A FREM named 'frem' directly under the root, where `UNetSE` has its own."""

  @nn.compact
  def __call__(self, num_channels: int, num_selected) -> jnp.ndarray:
    return FREM(deterministic=False, name='frem').draw(num_channels, num_selected)


def frem_channels(key: jax.Array, num_channels: int, num_selected) -> jnp.ndarray:
  """The [C] boolean mask of the channels `UNetSE`'s FREM enhances in a forward with `rngs={'frem': key}`.

  FREM draws from flax's 'frem' stream, which folds the module's place in the
  network into `key`: this draws from the same place (a FREM named 'frem' under
  the root, its first draw) without running the network. The training loop's
  logs (Fig. 9) and a population's step (train/population.py) use it.

  Args:
    key: the key the train or eval step is given for the 'frem' stream.
    num_channels: C, the deepest stage's width (`model.features[-1]`).
    num_selected: B (`frem.num_selected`), a runtime value.
  """
  return _FremPlace().apply({}, num_channels, num_selected, rngs={'frem': key})


class UNetOutput(NamedTuple):
  """Class logits float32 [N, H, W, K]; SuperVision logits of the same shape and dtype, or None."""
  logits: jnp.ndarray
  supervision_logits: Optional[jnp.ndarray] = None


class Stage(nn.Module):
  """Two (3x3 conv -> norm -> ReLU) followed by an SE block, computed in `dtype`."""
  features: int
  norm: ModuleDef
  se_reduction: int
  conv: ModuleDef = nn.Conv
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    for i in range(2):
      x = self.conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name=f'conv{i}')(x)
      x = nn.relu(self.norm(use_running_average=not train, name=f'norm{i}')(x))
    return SEBlock(self.se_reduction, name='se')(x)


class UNetSE(nn.Module):
  """U-Net+SE for semantic segmentation (the paper's Fig. 4).

  The encoder has one stage per entry of `features`, with a 2x2 max-pool
  between stages; its last stage (the "farthest layer from the loss", 512
  channels by default) feeds FREM. The decoder mirrors the encoder: 2x2
  transposed conv, concatenation with the skip, one stage. A 1x1 conv maps
  to the classes.

  Attributes:
    num_classes: K.
    features: widths of the encoder stages (`model.features`).
    norm: 'batch_renorm' (the paper's) or 'batch_norm' (`model.norm`).
    se_reduction: SE squeeze ratio (`model.se_reduction`).
    supervision: add the SuperVision head, a 1x1 conv from the deepest stage to
      K classes resized to the input (`supervision.enabled`). Computed in
      training only.
    norm_momentum, norm_epsilon, renorm_r_max, renorm_d_max,
    renorm_warmup_steps: normalisation settings (`model.norm_*`, `model.renorm_*`).
    axis_name: mapped axis over which normalisation statistics are averaged
      (pmap); None under jit, where the batch axis is already global.
    dtype: the computation's dtype, float32 or bfloat16 (`half_precision`);
      parameters and normalisation statistics are float32 either way, and the
      logits are returned in float32 for the loss and the metrics.
    conv, conv_transpose, max_pool: the layers, flax's own by default; any
      replacement with the same parameters and outputs may be plugged in (the
      CPU wing's faster ones: `frem_jax.build.build_model`, `model.layers`).
  """
  num_classes: int
  features: Sequence[int] = (32, 64, 128, 256, 512)
  norm: str = 'batch_renorm'
  se_reduction: int = 16
  supervision: bool = False
  norm_momentum: float = 0.99
  norm_epsilon: float = 1e-5
  renorm_r_max: float = 3.0
  renorm_d_max: float = 5.0
  renorm_warmup_steps: int = 5000
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  conv_transpose: ModuleDef = nn.ConvTranspose
  max_pool: Callable = nn.max_pool

  def _norm(self) -> ModuleDef:
    if self.norm == 'batch_renorm':
      return functools.partial(
          BatchRenorm, momentum=self.norm_momentum, epsilon=self.norm_epsilon,
          r_max=self.renorm_r_max, d_max=self.renorm_d_max,
          warmup_steps=self.renorm_warmup_steps, axis_name=self.axis_name, dtype=self.dtype)
    if self.norm == 'batch_norm':
      return functools.partial(
          nn.BatchNorm, momentum=self.norm_momentum, epsilon=self.norm_epsilon,
          axis_name=self.axis_name, dtype=self.dtype)
    raise ValueError(f"model.norm must be 'batch_renorm' or 'batch_norm', got {self.norm!r}")

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool,
               enhancement: Optional[Enhancement] = None) -> UNetOutput:
    """Segments `images` [N, H, W, C_in].

    Args:
      images: input batch.
      train: use batch statistics (and update the running ones) and compute the
        SuperVision head.
      enhancement: B and X for FREM, drawn from the 'frem' rng stream; None
        makes FREM the identity (inference, and the baseline).

    Returns:
      UNetOutput with the logits and, in training with SuperVision, its logits.
    """
    stage = functools.partial(Stage, norm=self._norm(), se_reduction=self.se_reduction,
                              conv=self.conv, dtype=self.dtype)
    skips = []
    x = images
    for i, width in enumerate(self.features[:-1]):
      x = stage(width, name=f'encoder{i}')(x, train)
      skips.append(x)
      x = self.max_pool(x, (2, 2), strides=(2, 2))
    x = stage(self.features[-1], name='deepest')(x, train)
    self.sow('intermediates', 'deepest_features', x)
    deepest = x
    # Named 'frem' under the root, where frem_channels draws the same channels.
    if enhancement is None:
      x = FREM(deterministic=True, name='frem')(x, 0, 1.0)
    else:
      x = FREM(deterministic=False, name='frem')(x, enhancement.num_selected, enhancement.factor,
                                                 selected=enhancement.channels)
    self.sow('intermediates', 'enhanced_features', x)
    for i, (width, skip) in reversed(list(enumerate(zip(self.features[:-1], skips)))):
      x = self.conv_transpose(width, (2, 2), strides=(2, 2), dtype=self.dtype, name=f'up{i}')(x)
      if i == len(skips) - 1:
        self.sow('intermediates', 'first_skip_features', skip)
      x = jnp.concatenate([x, skip], axis=-1)
      x = stage(width, name=f'decoder{i}')(x, train)
    logits = self.conv(self.num_classes, (1, 1), dtype=self.dtype, name='head')(x)
    # The loss, the metrics and predict's softmax read float32 logits whatever the dtype.
    logits = logits.astype(jnp.float32)

    supervision_logits = None
    if self.supervision and (train or self.is_initializing()):
      small = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name='supervision_head')(deepest)
      supervision_logits = jax.image.resize(small.astype(jnp.float32), logits.shape, method='bilinear')
    return UNetOutput(logits, supervision_logits)
