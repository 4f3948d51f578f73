"""Datasets: each is a TFDS builder; `load_dataset` prepares it once and returns its normalised splits in memory."""

import os
import threading

import ml_collections
import numpy as np

from frem_jax import input_pipeline
from frem_jax import workdir_lock
from frem_jax.datasets.names import FOLDER_NAMES
from frem_jax.datasets.names import NAMES
from frem_jax.datasets.names import SPLITS  # pylint: disable=unused-import  (datasets.SPLITS)
from frem_jax.errors import UserError

# TFDS's own progress bars while preparing (they name its temporary folders); the commands hide them.
_tfds_progress = {'show': True}


def show_tfds_progress(show: bool) -> None:
  """Whether TFDS shows its progress bars while a dataset is prepared (default True)."""
  _tfds_progress['show'] = show


def default_data_dir(workdir: str) -> str:
  """Where prepared datasets go when `dataset.data_dir` is empty: beside the run's workdir."""
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), 'tensorflow_datasets')


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The prepared data's folder of a run in `workdir`: `dataset.data_dir`, or by default beside the workdir.

  Absolute: a sweep hands it to trials that may run in other folders (Ray's workers do).
  """
  return os.path.abspath(config.dataset.data_dir) if config.dataset.data_dir else default_data_dir(workdir)


def with_data_dir(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """A copy of `config` whose data folders are absolute, `dataset.data_dir` set (`data_dir_of`).

  A sweep's trials share one prepared copy of the data, and may run in other folders (Ray's workers do).
  """
  config = config.copy_and_resolve_references()
  config.dataset.data_dir = data_dir_of(config, workdir)
  if config.dataset.source_dir:
    config.dataset.source_dir = os.path.abspath(config.dataset.source_dir)
  return config


def make_builder(ds: ml_collections.ConfigDict, data_dir: str):
  """The TFDS builder of `config.dataset` (not yet prepared)."""
  # pylint: disable=g-import-not-at-top  (tensorflow_datasets loads only when data is needed)
  if ds.name == 'synthetic_cells':
    from frem_jax.datasets.synthetic_cells import SyntheticCells
    sizes = {'train': ds.num_train, 'validation': ds.num_validation, 'test': ds.num_test}
    for split, n in sizes.items():
      if n < 1:
        raise UserError(f'dataset.num_{"validation" if split == "validation" else split}={n}: '
                        f'the {split} split would be empty; use at least 1')
    if ds.image_size < 16:
      raise UserError(f'dataset.image_size={ds.image_size} is too small for synthetic cells; use >= 16')
    return SyntheticCells(seed=ds.seed, image_size=ds.image_size, sizes=sizes, data_dir=data_dir)
  if ds.name == 'drosophila_vnc':
    from frem_jax.datasets.drosophila_vnc import DrosophilaVnc, ENV_VAR
    source = ds.source_dir or os.environ.get(ENV_VAR, '')
    return DrosophilaVnc(source_dir=source, tile_size=ds.image_size, data_dir=data_dir)
  if ds.name in FOLDER_NAMES:
    from frem_jax.datasets import cell_folder
    from frem_jax.datasets.cell_folder import CellFolder, MouseLiver
    cls = MouseLiver if ds.name == 'mouse_liver' else CellFolder
    return cls(source_dir=ds.source_dir, classes=cell_folder.folder_classes(ds), tile_size=ds.image_size,
               split_fractions=tuple(ds.split_fractions), split_seed=ds.split_seed, data_dir=data_dir)
  raise UserError(f'dataset.name={ds.name!r} is not one of {NAMES}')


def class_names(ds: ml_collections.ConfigDict) -> tuple:
  """The class names of `config.dataset`, without reading or preparing the data."""
  # pylint: disable=g-import-not-at-top  (tensorflow_datasets loads only for the folder datasets)
  if ds.name == 'synthetic_cells':
    from frem_jax.datasets import synthetic
    return tuple(synthetic.CLASS_NAMES)
  if ds.name == 'drosophila_vnc':
    from frem_jax.datasets import drosophila_vnc
    return tuple(drosophila_vnc.CLASS_NAMES)
  from frem_jax.datasets import cell_folder
  classes = cell_folder.folder_classes(ds)
  return tuple(str(name) for _, name in classes)


# The trials of a search run in threads: two building the same data at once would collide.
# Other processes (another run or sweep on the same data_dir) wait on the folder's lock file.
_PREPARE_LOCK = threading.Lock()


def load(ds: ml_collections.ConfigDict, data_dir: str):
  """Prepares (once) and loads `config.dataset`: (split -> base.LoadedSplit, class names)."""
  from frem_jax.datasets import base  # pylint: disable=g-import-not-at-top
  with _PREPARE_LOCK, workdir_lock.hold(data_dir, 'dataset.data_dir', wait=True,
                                                      read_only_ok=True):
    builder = make_builder(ds, data_dir)
    splits = base.prepare_and_load(builder, show_progress=_tfds_progress['show'])
  if ds.limit:
    splits = {k: base.LoadedSplit(v.images[:ds.limit], v.masks[:ds.limit], v.sources[:ds.limit],
                                  v.tiles[:ds.limit]) for k, v in splits.items()}
  return splits, tuple(builder.class_names)


def load_dataset(config: ml_collections.ConfigDict, data_dir: str) -> input_pipeline.Dataset:
  """Loads the configured dataset; intensities are normalised per channel by the training split's mean and std."""
  raw, class_names = load(config.dataset, data_dir)
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
    splits[name] = input_pipeline.Split(((loaded.images.astype(np.float32) - mean) / std).astype(np.float32),
                         loaded.masks.astype(np.int32), loaded.sources, loaded.tiles)
  if len(splits['train']) < config.batch_size:
    raise UserError(f'batch_size={config.batch_size} is larger than the training split '
                    f'({len(splits["train"])} images); lower batch_size')
  return input_pipeline.Dataset(splits, tuple(class_names), mean.tolist(), std.tolist())
