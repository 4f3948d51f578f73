"""Reading microscopy images and label maps (PNG or TIFF, 8 or 16 bit, grayscale or RGB)."""

import os

import numpy as np
from PIL import Image

from frem_jax.errors import UserError

IMAGE_SUFFIXES = ('.png', '.tif', '.tiff')


def _open(path: str) -> np.ndarray:
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode == 'P':
        im = im.convert('RGB')
      return np.asarray(im)
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f'cannot read {path}: {e}; replace the file or remove it (with its pair)') from e


def read_image(path: str) -> np.ndarray:
  """An image as float32 [H, W, C] with its stored intensities (C = 1 grayscale, 3 RGB)."""
  a = _open(path)
  if a.dtype == bool:
    a = a.astype(np.uint8)
  if a.ndim == 2:
    a = a[..., None]
  elif a.ndim == 3 and a.shape[-1] == 4:
    a = a[..., :3]  # alpha carries no intensity
  elif a.ndim != 3 or a.shape[-1] not in (1, 3):
    raise UserError(f'{path} has shape {a.shape}; expected a grayscale or RGB image')
  return a.astype(np.float32)


def read_label_map(path: str) -> np.ndarray:
  """A label map as int64 [H, W] of its stored values (an RGB map must be gray: equal channels)."""
  a = _open(path)
  if a.ndim == 3:
    if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
      raise UserError(f'{path} is a colour image; a label map must hold one value per pixel')
    a = a[..., 0]
  return a.astype(np.int64)


def stems(folder: str) -> dict:
  """File stem -> path of the images in `folder` (PNG/TIFF), ignoring hidden files."""
  out = {}
  for name in sorted(os.listdir(folder)):
    stem, suffix = os.path.splitext(name)
    if name.startswith('.') or suffix.lower() not in IMAGE_SUFFIXES:
      continue
    if stem in out:
      raise UserError(f'{folder} holds two images named {stem!r} ({os.path.basename(out[stem])}, {name}); keep one')
    out[stem] = os.path.join(folder, name)
  return out


def to_classes(values: np.ndarray, mapping: dict, path: str,
               hint: str = 'add it to dataset.classes or fix the mask') -> np.ndarray:
  """Label-map values -> class indices (uint8) by `mapping` {value: index}; names an unmapped value."""
  unknown = np.setdiff1d(np.unique(values), np.fromiter(mapping, np.int64))
  if unknown.size:
    raise UserError(f'{path} holds the value {int(unknown[0])}, which is not in the class mapping '
                    f'{sorted(mapping)}; {hint}')
  lut = np.zeros(int(max(mapping)) + 1, np.uint8)
  for value, index in mapping.items():
    lut[value] = index
  return lut[values]
