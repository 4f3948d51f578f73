"""Datasets: each is a TFDS builder; `load` prepares it once and returns its splits in memory."""

import os
import threading

import ml_collections

from frem_jax import workdir_lock
from frem_jax.errors import UserError

NAMES = ('synthetic_cells', 'drosophila_vnc', 'mouse_liver', 'cell_folder')


def default_data_dir(workdir: str) -> str:
  """Where prepared datasets go when `dataset.data_dir` is empty: beside the run's workdir."""
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), 'tensorflow_datasets')


def folder_classes(ds: ml_collections.ConfigDict) -> tuple:
  """((mask value, class name), ...) of a mouse_liver or cell_folder `config.dataset` (mouse: its default if empty)."""
  from frem_jax.datasets.cell_folder import MouseLiver  # pylint: disable=g-import-not-at-top
  classes = tuple(tuple(c) for c in ds.classes) or (MouseLiver.DEFAULT_CLASSES if ds.name == 'mouse_liver' else ())
  if not classes:
    raise UserError("dataset.classes is empty; give the mask value of each class, e.g. "
                    "--config.dataset.classes=\"((0, 'background'), (255, 'membrane'))\"")
  return classes


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
  if ds.name in ('mouse_liver', 'cell_folder'):
    from frem_jax.datasets.cell_folder import CellFolder, MouseLiver
    cls = MouseLiver if ds.name == 'mouse_liver' else CellFolder
    return cls(source_dir=ds.source_dir, classes=folder_classes(ds), tile_size=ds.image_size,
               split_fractions=tuple(ds.split_fractions), split_seed=ds.split_seed, data_dir=data_dir)
  raise UserError(f'dataset.name={ds.name!r} is not one of {NAMES}')


# The trials of a search run in threads: two building the same data at once would collide.
# Other processes (another run or sweep on the same data_dir) wait on the folder's lock file.
_PREPARE_LOCK = threading.Lock()


def load(ds: ml_collections.ConfigDict, data_dir: str):
  """Prepares (once) and loads `config.dataset`: (split -> base.LoadedSplit, class names)."""
  from frem_jax.datasets import base  # pylint: disable=g-import-not-at-top
  with _PREPARE_LOCK, workdir_lock.hold(data_dir, 'dataset.data_dir', wait=True,
                                                      read_only_ok=True):
    builder = make_builder(ds, data_dir)
    splits = base.prepare_and_load(builder)
  if ds.limit:
    splits = {k: base.LoadedSplit(v.images[:ds.limit], v.masks[:ds.limit], v.sources[:ds.limit],
                                  v.tiles[:ds.limit]) for k, v in splits.items()}
  return splits, tuple(builder.class_names)
