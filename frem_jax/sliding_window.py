"""Segmenting an image of any size with a model trained on square tiles: overlapping tiles, averaged.

The image is covered by a grid of `tile` x `tile` windows at a stride of
`tile - overlap`. Where the grid is larger than the image (the size does not
divide, or the image is smaller than one tile), the image is extended by
reflect padding (numpy's 'reflect': mirrored without repeating the edge pixel),
split evenly between the two borders of each axis; the logits of the padding
are dropped. Each pixel's logits are the mean over the windows covering it.
"""

import math
from typing import Callable

import numpy as np

from frem_jax.errors import UserError


def grid(length: int, tile: int, stride: int) -> tuple[list[int], int, int]:
  """Window starts along one axis of the padded image, and the padding before and after it."""
  count = 1 if length <= tile else math.ceil((length - tile) / stride) + 1
  padded = (count - 1) * stride + tile
  before = (padded - length) // 2
  return [i * stride for i in range(count)], before, padded - length - before


def predict_logits(logits_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: int,
                   overlap: int, batch_size: int = 8) -> np.ndarray:
  """Logits float32 [H, W, K] of one image [H, W, C] of any size, from windows of `tile`².

  Args:
    logits_fn: maps a batch of windows [N, tile, tile, C] to logits [N, tile, tile, K].
    image: the image, in whatever intensities `logits_fn` expects.
    tile: the window side (the model's training tile size).
    overlap: pixels shared by neighbouring windows, in [0, tile). With 0 and
      H, W multiples of `tile`, the windows are exactly the aligned crops.
    batch_size: windows per call of `logits_fn` (the last batch is padded to
      the same size, so `logits_fn` sees one batch shape per image).

  Returns:
    The mean logits of the windows covering each pixel.
  """
  image = np.asarray(image)
  if image.ndim != 3:
    raise UserError(f'an image of shape {image.shape} given; expected [H, W, C]')
  if not 0 <= overlap < tile:
    raise UserError(f'overlap={overlap} must be in [0, {tile}): below the tile size {tile}')
  stride = tile - overlap
  (ys, top, bottom), (xs, left, right) = (grid(image.shape[0], tile, stride),
                                           grid(image.shape[1], tile, stride))
  padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode='reflect')
  windows = [(y, x) for y in ys for x in xs]
  batch = min(batch_size, len(windows))
  sums, counts = None, np.zeros(padded.shape[:2] + (1,), np.float32)
  for start in range(0, len(windows), batch):
    chunk = windows[start:start + batch]
    crops = np.stack([padded[y:y + tile, x:x + tile] for y, x in chunk])
    if len(chunk) < batch:
      crops = np.concatenate([crops, np.zeros((batch - len(chunk),) + crops.shape[1:], crops.dtype)])
    logits = np.asarray(logits_fn(crops), np.float32)
    if sums is None:
      sums = np.zeros(padded.shape[:2] + logits.shape[-1:], np.float64)
    for (y, x), window in zip(chunk, logits):
      sums[y:y + tile, x:x + tile] += window
      counts[y:y + tile, x:x + tile] += 1
  mean = (sums / counts).astype(np.float32)
  return np.ascontiguousarray(mean[top:top + image.shape[0], left:left + image.shape[1]])
