"""Host-memory splits: loading, intensity normalisation, shuffled and padded batches."""

import dataclasses
from typing import Iterator, Optional

import ml_collections
import numpy as np

from frem_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')


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


def load_dataset(config: ml_collections.ConfigDict, data_dir: str) -> Dataset:
  """Loads the configured dataset; intensities are normalised per channel by the training split's mean and std."""
  from frem_jax import datasets  # pylint: disable=g-import-not-at-top
  raw, class_names = datasets.load(config.dataset, data_dir)
  train_images = raw['train'].images.astype(np.float32)
  if len(train_images) == 0:
    raise UserError(f'the train split of dataset {config.dataset.name!r} is empty')
  axes = tuple(range(train_images.ndim - 1))
  mean = train_images.mean(axis=axes)
  std = train_images.std(axis=axes)
  std = np.where(std > 0, std, 1.0)
  splits = {}
  for name in SPLITS:
    loaded = raw[name]
    if len(loaded.images) == 0:
      raise UserError(f'the {name} split of dataset {config.dataset.name!r} is empty')
    splits[name] = Split(((loaded.images.astype(np.float32) - mean) / std).astype(np.float32),
                         loaded.masks.astype(np.int32), loaded.sources, loaded.tiles)
  if len(splits['train']) < config.batch_size:
    raise UserError(f'batch_size={config.batch_size} is larger than the training split '
                    f'({len(splits["train"])} images); lower batch_size')
  return Dataset(splits, tuple(class_names), mean.tolist(), std.tolist())


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
