"""The Drosophila VNC ssTEM dataset (Gerhard et al. 2013), cut into tiles, split by section.

"Segmented anisotropic ssTEM dataset of neural tissue", Stephan Gerhard, Jan
Funke, Julien Martel, Albert Cardona, Richard Fetter; figshare 2013,
doi:10.6084/m9.figshare.856713; CC BY-NC-SA 3.0.

Source folder layout (as published): `stack1/raw/NN.tif` (20 sections of
1024x1024, 8 bit) and `stack1/{membranes,mitochondria,synapses}/NN.png`.
Classes: background 0, membrane 1, mitochondria 2, synapse 3; any mask value
> 0 marks its class, with the precedence synapse > membrane > mitochondria >
background. Each section is cut into non-overlapping tiles of
`dataset.image_size` (256: 16 tiles, the paper's protocol). The split is by
section, fixed: sections 00–13 train, 14–15 validation, 16–19 test (14/2/4;
serial sections are correlated, so contiguous blocks keep neighbours of test
sections out of training). `full_sections` reassembles whole sections from
their tiles for whole-image evaluation.
"""

import os
from typing import Iterator

import numpy as np

from frem_jax.datasets import base
from frem_jax.datasets import image_io
from frem_jax.datasets import tiling
from frem_jax.errors import UserError

CLASS_NAMES = ('background', 'membrane', 'mitochondria', 'synapse')
SECTIONS = {'train': tuple(range(0, 14)), 'validation': (14, 15), 'test': (16, 17, 18, 19)}
SECTION_SIZE = 1024
ENV_VAR = 'FREM_DROSOPHILA_DIR'
WHERE = ('download the "Segmented anisotropic ssTEM dataset of neural tissue" '
         '(doi:10.6084/m9.figshare.856713, also github.com/unidesign/groundtruth-drosophila-vnc) '
         'and set --config.dataset.source_dir to the folder that holds stack1/')


def check_source(source_dir: str) -> None:
  """Raises UserError unless `source_dir` holds the published layout."""
  if not source_dir:
    raise UserError(f'dataset.source_dir is not set for drosophila_vnc; {WHERE}')
  raw = os.path.join(source_dir, 'stack1', 'raw')
  if not os.path.isdir(raw):
    raise UserError(f'{raw} does not exist; {WHERE}')
  for s in range(20):
    for path in [os.path.join(raw, f'{s:02d}.tif')] + [
        os.path.join(source_dir, 'stack1', d, f'{s:02d}.png') for d in ('membranes', 'mitochondria', 'synapses')]:
      if not os.path.isfile(path):
        raise UserError(f'{path} is missing; the dataset needs all 20 sections with their 3 masks ({WHERE})')


def read_section(source_dir: str, section: int) -> tuple[np.ndarray, np.ndarray]:
  """One section: image [1024, 1024, 1] uint8 and its 4-class label map [1024, 1024] uint8."""
  stack = os.path.join(source_dir, 'stack1')
  image = image_io.read_image(os.path.join(stack, 'raw', f'{section:02d}.tif'))
  label = np.zeros(image.shape[:2], np.uint8)
  for name, index in (('mitochondria', 2), ('membranes', 1), ('synapses', 3)):  # later wins
    path = os.path.join(stack, name, f'{section:02d}.png')
    mask = image_io.read_label_map(path)
    if mask.shape != label.shape:
      raise UserError(f'{path} is {mask.shape[0]}x{mask.shape[1]} but its image is '
                      f'{label.shape[0]}x{label.shape[1]}; the mask must match its image')
    label[mask > 0] = index
  return image.astype(np.uint8), label


class DrosophilaVnc(base.SegmentationBuilder):
  """TFDS builder of the Drosophila VNC tiles (see the module docstring)."""
  class_names = CLASS_NAMES

  def __init__(self, *, source_dir: str, tile_size: int = 256, **kwargs):
    check_source(source_dir)
    self._source_dir, self._tile = source_dir, tile_size
    super().__init__(options={'source_dir': os.path.realpath(source_dir), 'tile_size': tile_size},
                     image_shape=(tile_size, tile_size, 1), image_dtype=np.uint8, **kwargs)

  def examples(self, split: str) -> Iterator[base.Example]:
    for section in SECTIONS[split]:
      image, label = read_section(self._source_dir, section)
      pairs = zip(tiling.tiles(image, self._tile, f'section {section}'), tiling.tiles(label, self._tile))
      for t, (im, lab) in enumerate(pairs):
        yield base.Example(im, lab, section, t)


def full_sections(split: base.LoadedSplit, tile_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Whole sections reassembled from their tiles: images [S, 1024, 1024, 1], masks [S, 1024, 1024], section ids."""
  starts = tiling.tile_starts(SECTION_SIZE, tile_size)
  positions = [(y, x) for y in starts for x in starts]
  sections = np.unique(split.sources)
  images = np.zeros((len(sections), SECTION_SIZE, SECTION_SIZE) + split.images.shape[3:], split.images.dtype)
  masks = np.zeros((len(sections), SECTION_SIZE, SECTION_SIZE), split.masks.dtype)
  for k, s in enumerate(sections):
    for i in np.flatnonzero(split.sources == s):
      y, x = positions[split.tiles[i]]
      images[k, y:y + tile_size, x:x + tile_size] = split.images[i]
      masks[k, y:y + tile_size, x:x + tile_size] = split.masks[i]
  return images, masks, sections
