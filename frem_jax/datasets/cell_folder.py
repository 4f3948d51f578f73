"""Any folder of images and masks (`cell_folder`), and the paper's mouse liver data (`mouse_liver`).

`cell_folder` layout: `SOURCE/images/NAME.{png,tif,tiff}` and
`SOURCE/masks/NAME.{png,tif,tiff}` with matching stems; images 8 or 16 bit,
grayscale or RGB (all images of a dataset alike); masks hold one value per
pixel, mapped to classes by `dataset.classes`, e.g. ((0, 'background'),
(255, 'membrane')); a value not in the mapping is an error naming the file.
The split is by image, never by tile: `SOURCE/splits/{train,validation,test}.txt`
(one stem per line) if that folder exists, else `dataset.split_fractions`
(validation and test rounded, train the rest) of the stems sorted and
shuffled with `dataset.split_seed`. Images are cut into tiles of
`dataset.image_size`; where the size does not divide, the last row/column of
tiles is aligned with the far edge and overlaps its neighbour (no pixel is
dropped); an image smaller than a tile is an error.

`mouse_liver`, the paper's mouse liver data: a cell folder with its own layout, classes and split.
Imanishi et al., Cell Structure and Function 43(2):129–140, 2018; not public.
`SOURCE/images/` and `SOURCE/labels/` hold 50 images of 256x256 and their
label maps: 0 background, 1 membrane, 2 nucleus (override with
`dataset.classes` if your copy uses other values).

The split is by image: 35 train, 5 validation, 10 test, drawn by
`split_stems` with MOUSE_SPLIT_FRACTIONS and MOUSE_SPLIT_SEED (the defaults
of `dataset.split_fractions` and `dataset.split_seed`), unless
`SOURCE/splits/` names it.
"""

import os
from typing import Iterator

import ml_collections
import numpy as np

from frem_jax.datasets import base
from frem_jax.datasets import image_io
from frem_jax.datasets import tiling
from frem_jax.errors import UserError


def split_stems(stems: list, source_dir: str, fractions: tuple, seed: int) -> dict:
  """split -> stems, from `source_dir/splits/*.txt` or from fractions and a seed."""
  split_dir = os.path.join(source_dir, 'splits')
  if os.path.isdir(split_dir):
    out = {}
    for split in base.SPLITS:
      path = os.path.join(split_dir, f'{split}.txt')
      if not os.path.isfile(path):
        raise UserError(f'{path} is missing; {split_dir} must hold train.txt, validation.txt and test.txt')
      with open(path) as f:
        names = [l.strip() for l in f if l.strip()]
      missing = [n for n in names if n not in stems]
      if missing:
        raise UserError(f'{path} names {missing[0]!r}, which has no image and mask pair in {source_dir}')
      out[split] = names
  else:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
      raise UserError(f'dataset.split_fractions={tuple(fractions)} must be 3 non-negative numbers '
                      '(train, validation, test) that sum to 1')
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val = int(round(len(stems) * fractions[1]))
    n_test = int(round(len(stems) * fractions[2]))
    shuffled = [stems[i] for i in order]
    out = {'validation': shuffled[:n_val], 'test': shuffled[n_val:n_val + n_test],
           'train': shuffled[n_val + n_test:]}
  for split in base.SPLITS:
    if not out[split]:
      raise UserError(f'the {split} split of {source_dir} is empty ({len(stems)} images, '
                      f'fractions {tuple(fractions)}); add images or give splits/{split}.txt')
  return out


def folder_classes(ds: ml_collections.ConfigDict) -> tuple:
  """((mask value, class name), ...) of a mouse_liver or cell_folder `config.dataset` (mouse: its default if empty)."""
  classes = tuple(tuple(c) for c in ds.classes) or (MouseLiver.DEFAULT_CLASSES if ds.name == 'mouse_liver' else ())
  if not classes:
    raise UserError("dataset.classes is empty; give the mask value of each class, e.g. "
                    "--config.dataset.classes=\"((0, 'background'), (255, 'membrane'))\"")
  return classes


def class_mapping(classes: tuple) -> dict:
  """{mask value: class index} of `dataset.classes` ((value, name), ...), in class-index order."""
  return {int(value): index for index, (value, _) in enumerate(classes)}


class CellFolder(base.SegmentationBuilder):
  """TFDS builder of a folder of images and masks (see the module docstring)."""
  IMAGE_DIR, MASK_DIR = 'images', 'masks'

  def __init__(self, *, source_dir: str, classes: tuple, tile_size: int,
               split_fractions: tuple = (0.7, 0.1, 0.2), split_seed: int = 0, **kwargs):
    self._source_dir, self._tile = source_dir, tile_size
    self._mapping = class_mapping(classes)
    self.class_names = tuple(str(name) for _, name in classes)
    images, masks = self.pairs(source_dir)
    self._images, self._masks = images, masks
    self._stems = sorted(images)
    self._splits = split_stems(self._stems, source_dir, tuple(split_fractions), split_seed)
    channels = image_io.read_image(images[self._stems[0]]).shape[-1]
    options = {'source_dir': os.path.realpath(source_dir), 'classes': [list(c) for c in classes],
               'tile_size': tile_size, 'splits': self._splits, 'layout': [self.IMAGE_DIR, self.MASK_DIR]}
    super().__init__(options=options, image_shape=(tile_size, tile_size, channels),
                     image_dtype=np.float32, **kwargs)

  @classmethod
  def pairs(cls, source_dir: str) -> tuple[dict, dict]:
    """Stem -> image path and stem -> mask path of `source_dir`; UserError for a file without its pair."""
    cls.check_folder(source_dir)
    images = image_io.stems(os.path.join(source_dir, cls.IMAGE_DIR))
    masks = image_io.stems(os.path.join(source_dir, cls.MASK_DIR))
    for stem in images:
      if stem not in masks:
        raise UserError(f'{images[stem]} has no mask in {os.path.join(source_dir, cls.MASK_DIR)}; '
                        'add NAME with the same stem or remove the image')
    for stem in masks:
      if stem not in images:
        raise UserError(f'{masks[stem]} has no image in {os.path.join(source_dir, cls.IMAGE_DIR)}; '
                        'add the image or remove the mask')
    if not images:
      raise UserError(f'{os.path.join(source_dir, cls.IMAGE_DIR)} holds no PNG or TIFF images')
    return images, masks

  @classmethod
  def check_folder(cls, source_dir: str) -> None:
    for sub in (cls.IMAGE_DIR, cls.MASK_DIR):
      path = os.path.join(source_dir or '.', sub)
      if not source_dir or not os.path.isdir(path):
        raise UserError(f'{path} does not exist; cell_folder needs dataset.source_dir with '
                        f'{cls.IMAGE_DIR}/ and {cls.MASK_DIR}/ of matching file names (docs/datasets.md)')

  def examples(self, split: str) -> Iterator[base.Example]:
    channels = self._image_shape[-1]
    for stem in self._splits[split]:
      image = image_io.read_image(self._images[stem])
      values = image_io.read_label_map(self._masks[stem])
      if image.shape[:2] != values.shape:
        raise UserError(f'{self._images[stem]} is {image.shape[0]}x{image.shape[1]} but '
                        f'{self._masks[stem]} is {values.shape[0]}x{values.shape[1]}; they must match')
      if image.shape[-1] != channels:
        raise UserError(f'{self._images[stem]} has {image.shape[-1]} channels, the first image '
                        f'{channels}; all images must be grayscale or all RGB')
      mask = image_io.to_classes(values, self._mapping, self._masks[stem])
      source = self._stems.index(stem)
      pairs = zip(tiling.tiles(image, self._tile, self._images[stem]), tiling.tiles(mask, self._tile))
      for t, (im, m) in enumerate(pairs):
        yield base.Example(im, m, source, t)


MOUSE_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test: 35/5/10 of the 50 images
MOUSE_SPLIT_SEED = 0


class MouseLiver(CellFolder):
  """TFDS builder of the paper's mouse liver images (see the module docstring)."""
  IMAGE_DIR, MASK_DIR = 'images', 'labels'
  DEFAULT_CLASSES = ((0, 'background'), (1, 'membrane'), (2, 'nucleus'))

  def __init__(self, *, split_fractions: tuple = MOUSE_SPLIT_FRACTIONS, split_seed: int = MOUSE_SPLIT_SEED,
               **kwargs):
    super().__init__(split_fractions=split_fractions, split_seed=split_seed, **kwargs)

  @classmethod
  def check_folder(cls, source_dir: str) -> None:
    path = os.path.join(source_dir or '<dataset.source_dir unset>', cls.IMAGE_DIR)
    if not source_dir or not os.path.isdir(path) or not os.path.isdir(os.path.join(source_dir, cls.MASK_DIR)):
      raise UserError(
          f'{path} does not exist: the mouse liver dataset (Imanishi et al., Cell Struct. Funct. 2018) '
          'is not public; ask its authors (Hotta lab, Meijo University) for it, put the 50 images in '
          'SOURCE/images/ and the label maps (0 background, 1 membrane, 2 nucleus) with the same '
          'names in SOURCE/labels/, and set --config.dataset.source_dir=SOURCE')
