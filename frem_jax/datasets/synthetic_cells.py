"""TFDS builder of the embedded synthetic cell images (see `synthetic`)."""

from typing import Iterator

import numpy as np

from frem_jax.datasets import base
from frem_jax.datasets import synthetic


class SyntheticCells(base.SegmentationBuilder):
  """Synthetic mouse-liver-like images, generated from a seed; one example per image."""
  class_names = synthetic.CLASS_NAMES

  def __init__(self, *, seed: int, image_size: int, sizes: dict, **kwargs):
    self._seed, self._size, self._sizes = seed, image_size, dict(sizes)
    super().__init__(options={'seed': seed, 'image_size': image_size, 'sizes': self._sizes},
                     image_shape=(image_size, image_size, 1), image_dtype=np.float32, **kwargs)

  def examples(self, split: str) -> Iterator[base.Example]:
    for i in range(self._sizes[split]):
      rng = np.random.default_rng(np.random.SeedSequence([self._seed, synthetic.SPLIT_IDS[split], i]))
      image, mask = synthetic.make_example(rng, self._size)
      yield base.Example(image, mask, i, 0)
