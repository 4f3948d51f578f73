"""Host-memory splits: loading, intensity normalisation, shuffled and padded batches."""

import dataclasses
from typing import Iterator

import ml_collections
import numpy as np

from frem_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in host memory: images [N, H, W, C] float32 (normalised), masks [N, H, W] int32."""
  images: np.ndarray
  masks: np.ndarray

  def __len__(self) -> int:
    return len(self.images)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """All splits of a dataset, its class names and the normalisation applied."""
  splits: dict
  class_names: tuple
  mean: float
  std: float

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _raw_splits(config: ml_collections.ConfigDict):
  """split -> (images, masks) as stored, and the class names."""
  ds = config.dataset
  if ds.name == 'synthetic_cells':
    from frem_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
    sizes = {'train': ds.num_train, 'validation': ds.num_validation, 'test': ds.num_test}
    raw = {s: synthetic.make_split(ds.seed, s, n, ds.image_size) for s, n in sizes.items()}
    return raw, synthetic.CLASS_NAMES
  raise UserError(f'dataset.name={ds.name!r} is not available yet in this version')


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """Loads the configured dataset and normalises intensities by the training split's mean and std."""
  raw, class_names = _raw_splits(config)
  train_images = raw['train'][0].astype(np.float32)
  mean = float(train_images.mean())
  std = float(train_images.std()) or 1.0
  splits = {}
  for name in SPLITS:
    images, masks = raw[name]
    if len(images) == 0:
      raise UserError(f'the {name} split of dataset {config.dataset.name!r} is empty')
    splits[name] = Split(((images.astype(np.float32) - mean) / std).astype(np.float32),
                         masks.astype(np.int32))
  if len(splits['train']) < config.batch_size:
    raise UserError(f'batch_size={config.batch_size} is larger than the training split '
                    f'({len(splits["train"])} images); lower batch_size')
  return Dataset(splits, tuple(class_names), mean, std)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The shuffled order of the training examples in `epoch`, a function of (seed, epoch) only."""
  return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(num_examples)


def train_batches(split: Split, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
  """The full batches of one shuffled epoch; the last incomplete batch is left out (a new order every epoch)."""
  order = epoch_order(len(split), seed, epoch)
  for start in range(0, len(order) - batch_size + 1, batch_size):
    idx = np.sort(order[start:start + batch_size])
    yield {'image': split.images[idx], 'mask': split.masks[idx]}


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
