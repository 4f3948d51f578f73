"""Cutting images into the model's square tiles."""

import numpy as np

from frem_jax.errors import UserError


def tile_starts(length: int, tile: int) -> list[int]:
  """Start offsets of tiles covering [0, length).

  Tiles do not overlap when `tile` divides `length`; otherwise the last tile is
  aligned with the far edge and overlaps its neighbour, so no pixel is dropped.
  """
  if length < tile:
    raise ValueError(f'length {length} < tile {tile}')
  starts = list(range(0, length - tile + 1, tile))
  if starts[-1] + tile < length:
    starts.append(length - tile)
  return starts


def tiles(array: np.ndarray, tile: int, path: str = 'image') -> list[np.ndarray]:
  """The tiles of `array` [H, W, ...] in row-major order (see `tile_starts`)."""
  h, w = array.shape[:2]
  if h < tile or w < tile:
    raise UserError(f'{path} is {h}x{w}, smaller than the tile size {tile} (dataset.image_size); '
                    'lower dataset.image_size or use larger images')
  return [array[y:y + tile, x:x + tile] for y in tile_starts(h, tile) for x in tile_starts(w, tile)]
