"""Reading ground-truth masks for a trained run, in the format its data was trained on.

A run of `cell_folder` or `mouse_liver` read its masks through `dataset.classes`
(mask value -> class, e.g. 0 -> background, 255 -> nucleus); scoring the run on
masks of the same files must read them the same way. Masks that hold class
indices 0..K-1 instead are accepted too when that is unambiguous: when their
values do not all fit the run's own mapping but do all fit 0..K-1. The choice
is made once for all masks of a command (one convention per folder), and
`describe` says which one was used. Drosophila and synthetic runs have no value
mapping: their masks are class indices.
"""

import dataclasses
from typing import Callable, Optional

import ml_collections
import numpy as np
from PIL import Image

from frem_jax.datasets import image_io
from frem_jax.datasets.names import FOLDER_NAMES
from frem_jax.errors import UserError

RUN_CLASSES, CLASS_INDICES = 'dataset.classes', 'class indices'


@dataclasses.dataclass(frozen=True)
class Mask:
  """One ground-truth mask: `name` (the file named in errors) and `read`, its stored values int64 [H, W]."""
  name: str
  read: Callable[[], np.ndarray]


@dataclasses.dataclass(frozen=True)
class MaskFormat:
  """How stored mask values become class indices: `name` (RUN_CLASSES or CLASS_INDICES), {value: index}."""
  name: str
  mapping: dict


def read_values(path: str) -> np.ndarray:
  """The stored values int64 [H, W] of a mask file; a palette PNG gives its indices (predict's own outputs)."""
  try:
    with Image.open(path) as im:
      values = np.asarray(im).astype(np.int64) if im.mode == 'P' else None
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f'cannot read {path}: {e}; replace the mask') from e
  return image_io.read_label_map(path) if values is None else values


def mask_file(path: str) -> Mask:
  return Mask(path, lambda: read_values(path))


def run_mapping(config: ml_collections.ConfigDict) -> Optional[dict]:
  """{mask value: class index} of a run's `dataset.classes` (cell_folder, mouse_liver); None for the others."""
  if config.dataset.name not in FOLDER_NAMES:
    return None
  from frem_jax.datasets import cell_folder  # pylint: disable=g-import-not-at-top
  return cell_folder.class_mapping(cell_folder.folder_classes(config.dataset))


def formats(config: ml_collections.ConfigDict, num_classes: int) -> list[MaskFormat]:
  """The formats a run accepts, its own first (the class indices only if they differ from it)."""
  indices = MaskFormat(CLASS_INDICES, {k: k for k in range(num_classes)})
  own = run_mapping(config)
  if own is None:
    return [indices]
  return [MaskFormat(RUN_CLASSES, own)] + ([] if own == indices.mapping else [indices])


def choose_format(values: dict, config: ml_collections.ConfigDict, num_classes: int) -> MaskFormat:
  """The first format that maps every value of every mask; else UserError naming a file and its value.

  Args:
    values: mask name -> the distinct values it holds.
  """
  options = formats(config, num_classes)
  fits = [[name for name, v in values.items() if np.isin(v, list(f.mapping)).all()] for f in options]
  for fmt, fitting in zip(options, fits):
    if len(fitting) == len(values):
      return fmt
  # Name a file that misfits the format most masks fit: its odd value is the likely mistake.
  best = max(range(len(options)), key=lambda i: len(fits[i]))
  name = next(n for n in values if n not in fits[best])
  accepted = ' or '.join(
      f"the run's dataset.classes values {sorted(f.mapping)}" if f.name == RUN_CLASSES
      else f'class indices 0..{num_classes - 1}' for f in options)
  image_io.to_classes(values[name], options[best].mapping, name,
                      hint=f'masks must hold {accepted} (one convention for all masks); fix the mask')
  raise AssertionError('unreachable: to_classes raises on an unmapped value')


def to_classes(values: np.ndarray, fmt: MaskFormat, name: str) -> np.ndarray:
  """Class indices uint8 [H, W] of a mask's stored values."""
  return image_io.to_classes(values, fmt.mapping, name)


def describe(fmt: MaskFormat, class_names: tuple) -> dict:
  """For iou.json: {'read_as': …, 'values': {stored value: class name}}."""
  return {'read_as': fmt.name,
          'values': {str(value): class_names[index] for value, index in sorted(fmt.mapping.items())}}
