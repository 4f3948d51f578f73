"""Host-memory splits (loaded and normalised by `datasets.load_dataset`): shuffled and padded batches."""

import dataclasses
from typing import Iterator, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in host memory: images [N, H, W, C] float32 (normalised), masks [N, H, W] int32.

  `sources` and `tiles` say which source image (or section) and which tile of
  it each example is, when the dataset records it.
  """
  images: np.ndarray
  masks: np.ndarray
  sources: Optional[np.ndarray] = None
  tiles: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.images)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """All splits of a dataset, its class names and the normalisation applied."""
  splits: dict
  class_names: tuple
  mean: list  # per channel
  std: list

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The shuffled order of the training examples in `epoch`, a function of (seed, epoch) only."""
  return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(num_examples)


def train_batches(split: Split, batch_size: int, seed: int, epoch: int,
                  augment: bool = False) -> Iterator[dict]:
  """The full batches of one shuffled epoch; the last incomplete batch is left out (a new order every epoch).

  With `augment`, each example gets one of the 8 flips/90° rotations, drawn from (seed, epoch).
  """
  order = epoch_order(len(split), seed, epoch)
  rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 1]))
  for start in range(0, len(order) - batch_size + 1, batch_size):
    idx = np.sort(order[start:start + batch_size])
    batch = {'image': split.images[idx], 'mask': split.masks[idx]}
    yield augment_batch(batch, rng) if augment else batch


def augment_batch(batch: dict, rng: np.random.Generator) -> dict:
  """Applies a random dihedral transform (flip and/or 90° rotation) to each image and its mask."""
  images, masks = [], []
  for image, mask in zip(batch['image'], batch['mask']):
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    image, mask = np.rot90(image, k, axes=(0, 1)), np.rot90(mask, k, axes=(0, 1))
    if flip:
      image, mask = image[:, ::-1], mask[:, ::-1]
    images.append(image)
    masks.append(mask)
  return {'image': np.ascontiguousarray(np.stack(images)), 'mask': np.ascontiguousarray(np.stack(masks))}


def steps_per_epoch(split: Split, batch_size: int) -> int:
  """Number of full training batches per epoch."""
  return len(split) // batch_size


def eval_batches(split: Split, batch_size: int) -> Iterator[dict]:
  """All examples in order, the last batch padded; 'weight' is 0 on padding."""
  n = len(split)
  for start in range(0, n, batch_size):
    images = split.images[start:start + batch_size]
    masks = split.masks[start:start + batch_size]
    pad = batch_size - len(images)
    weight = np.ones(masks.shape, np.float32)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
      masks = np.concatenate([masks, np.zeros((pad,) + masks.shape[1:], masks.dtype)])
      weight = np.concatenate([weight, np.zeros((pad,) + weight.shape[1:], weight.dtype)])
    yield {'image': images, 'mask': masks, 'weight': weight}
