"""The shared TFDS builder of all segmentation datasets, and loading a prepared one into memory.

Prepared data are array_record files of `tfds.features.Tensor` features,
which need no TensorFlow. The options that decide a dataset's content (source
folder, tile size, split, class mapping) are hashed into the builder config's
name, so different options never share prepared files. TFDS writes into a
temporary folder and renames it when preparation has finished: an interrupted
preparation leaves nothing that a later run would trust, and is redone.
"""

import dataclasses
import hashlib
import json
from typing import Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from frem_jax.datasets.names import SPLITS


@dataclasses.dataclass(frozen=True)
class Example:
  """One tile: image [H, W, C], mask [H, W] of class indices, and where it came from."""
  image: np.ndarray
  mask: np.ndarray
  source: int  # index of the source image (or section) in the sorted list of all sources
  tile: int  # row-major tile index within that source


@dataclasses.dataclass(frozen=True)
class LoadedSplit:
  """A prepared split in memory, in generation order: images, masks, and each tile's source and tile ids."""
  images: np.ndarray
  masks: np.ndarray
  sources: np.ndarray
  tiles: np.ndarray


class SegmentationBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: subclasses set `class_names` and implement `split_names` and `examples`."""
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  class_names: tuple = ()

  def __init__(self, *, options: dict, image_shape: tuple, image_dtype, **kwargs):
    self._options = options
    self._image_shape, self._image_dtype = tuple(image_shape), image_dtype
    text = json.dumps(options, sort_keys=True, default=str)
    config = tfds.core.BuilderConfig(name='o' + hashlib.sha1(text.encode()).hexdigest()[:12],
                                     description=text)
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.builder_config.description,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=self._image_shape, dtype=self._image_dtype),
            'mask': tfds.features.Tensor(shape=self._image_shape[:2], dtype=np.uint8),
            'index': tfds.features.Scalar(dtype=np.int32),
            'source': tfds.features.Scalar(dtype=np.int32),
            'tile': tfds.features.Scalar(dtype=np.int32),
        }))

  # TFDS prints these to stdout (with 'Unknown size' for generated data); debug lines instead.
  def _log_download_bytes(self) -> None:
    logging.debug('Preparing dataset %s in %s', self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.debug('Prepared dataset %s in %s', self.name, self.data_dir)

  def split_names(self) -> tuple:
    return SPLITS

  def examples(self, split: str) -> Iterator[Example]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self.split_names()}

  def _generate_examples(self, split):
    for i, ex in enumerate(self.examples(split)):
      yield i, {'image': ex.image.astype(self._image_dtype), 'mask': ex.mask.astype(np.uint8),
                'index': i, 'source': ex.source, 'tile': ex.tile}


def prepare_and_load(builder: SegmentationBuilder, show_progress: bool = True) -> dict:
  """Prepares `builder` once (with TFDS's progress bars if `show_progress`), then reads every split into memory: split -> LoadedSplit."""
  tfds.display_progress_bar(show_progress)
  builder.download_and_prepare(file_format='array_record')
  out = {}
  for split, source in builder.as_data_source().items():
    records = sorted((source[i] for i in range(len(source))), key=lambda r: int(r['index']))
    out[split] = LoadedSplit(
        images=np.stack([r['image'] for r in records]) if records else np.zeros((0,) + builder._image_shape),
        masks=np.stack([r['mask'] for r in records]) if records else np.zeros((0,) + builder._image_shape[:2], np.uint8),
        sources=np.asarray([int(r['source']) for r in records], np.int32),
        tiles=np.asarray([int(r['tile']) for r in records], np.int32))
  return out
