"""The paper's mouse liver dataset on a stand-in folder: its layout, classes, split, and the missing-data message."""

import pytest

from configs import mouse
from frem_jax.datasets import base
from frem_jax.datasets import cell_folder
from frem_jax.datasets.cell_folder import MouseLiver
from frem_jax.errors import UserError
from tests.datasets.folders import write_folder


def test_mouse_liver_layout_and_35_5_10_split(tmp_path):
  src = write_folder(str(tmp_path / 'mouse'), 50, size=(32, 32), mask_dir='labels')
  builder = MouseLiver(source_dir=src, classes=MouseLiver.DEFAULT_CLASSES, tile_size=32,
                       data_dir=str(tmp_path / 'tfds'))
  loaded = base.prepare_and_load(builder)
  assert {k: len(v.images) for k, v in loaded.items()} == {'train': 35, 'validation': 5, 'test': 10}
  assert builder.class_names == ('background', 'membrane', 'nucleus')


def test_mouse_liver_missing_folder_says_whom_to_ask(tmp_path):
  with pytest.raises(UserError, match=r'is not public; ask its authors \(Hotta lab, Meijo University\)'):
    MouseLiver(source_dir=str(tmp_path / 'none'), classes=MouseLiver.DEFAULT_CLASSES, tile_size=32)


def test_the_paper_config_uses_the_datasets_split():
  ds = mouse.get_config().dataset
  assert tuple(ds.split_fractions) == cell_folder.MOUSE_SPLIT_FRACTIONS
  assert ds.split_seed == cell_folder.MOUSE_SPLIT_SEED
