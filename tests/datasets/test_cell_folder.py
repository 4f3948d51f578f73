"""The folder dataset (cell_folder) on stand-in folders, and every bad input."""

import os

import numpy as np
import pytest
from PIL import Image

from frem_jax.datasets import base
from frem_jax.datasets import tiling
from frem_jax.datasets.cell_folder import CellFolder
from frem_jax.errors import UserError
from tests.datasets.folders import write_folder

CLASSES = ((0, 'background'), (128, 'membrane'), (255, 'nucleus'))


def folder(tmp_path, n=10, **kw):
  return write_folder(str(tmp_path / 'src'), n, values=(0, 128, 255), **kw)


def build(src, tmp_path, tile=32, **kw):
  return CellFolder(source_dir=src, classes=CLASSES, tile_size=tile, data_dir=str(tmp_path / 'tfds'), **kw)


def test_tile_rule_aligns_the_last_tile_with_the_far_edge():
  assert tiling.tile_starts(64, 32) == [0, 32]
  assert tiling.tile_starts(70, 32) == [0, 32, 38]
  assert tiling.tile_starts(32, 32) == [0]


@pytest.mark.parametrize('mode,channels', [('png8', 1), ('tif16', 1), ('rgb', 3)])
def test_folder_is_tiled_split_by_image_and_mapped(tmp_path, mode, channels):
  src = folder(tmp_path, n=10, size=(40, 70), mode=mode)
  loaded = base.prepare_and_load(build(src, tmp_path))
  # 10 images -> 7/1/2 by (0.7, 0.1, 0.2); each 40x70 image gives 2 x 3 tiles of 32².
  assert {k: len(v.images) for k, v in loaded.items()} == {'train': 42, 'validation': 6, 'test': 12}
  assert loaded['train'].images.shape[1:] == (32, 32, channels)
  assert set(np.unique(loaded['train'].masks)) == {0, 1, 2}
  by_split = {k: set(v.sources.tolist()) for k, v in loaded.items()}
  assert not (by_split['train'] & by_split['test']) and not (by_split['train'] & by_split['validation'])
  # The last tile column overlaps: tile 2 of an image starts at column 38.
  src_image = np.asarray(Image.open(os.path.join(src, 'masks', 'img000.png')))
  split = next(v for v in loaded.values() if 0 in v.sources)
  i = int(np.flatnonzero((split.sources == 0) & (split.tiles == 2))[0])
  np.testing.assert_array_equal(split.masks[i], np.searchsorted([0, 128, 255], src_image[0:32, 38:70]))
  if mode == 'tif16':
    assert loaded['train'].images.max() > 255  # 16-bit intensities kept


def test_split_files_decide_the_split(tmp_path):
  src = folder(tmp_path, n=4)
  os.makedirs(os.path.join(src, 'splits'))
  for split, names in (('train', 'img000\nimg001\n'), ('validation', 'img002\n'), ('test', 'img003\n')):
    with open(os.path.join(src, 'splits', f'{split}.txt'), 'w') as f:
      f.write(names)
  loaded = base.prepare_and_load(build(src, tmp_path, tile=64))
  assert {k: v.sources.tolist() for k, v in loaded.items()} == {'train': [0, 1], 'validation': [2], 'test': [3]}


def test_missing_folder(tmp_path):
  with pytest.raises(UserError, match=r'nowhere/images does not exist; cell_folder needs dataset.source_dir'):
    build(str(tmp_path / 'nowhere'), tmp_path)


def test_image_without_mask_and_mask_without_image(tmp_path):
  src = folder(tmp_path, n=4)
  os.remove(os.path.join(src, 'masks', 'img001.png'))
  with pytest.raises(UserError, match=r'images/img001.png has no mask in'):
    build(src, tmp_path)
  src2 = write_folder(str(tmp_path / 'src2'), 4, values=(0, 128, 255))
  os.remove(os.path.join(src2, 'images', 'img002.png'))
  with pytest.raises(UserError, match=r'masks/img002.png has no image in'):
    build(src2, tmp_path)


def test_image_and_mask_of_different_sizes(tmp_path):
  src = folder(tmp_path)
  Image.fromarray(np.zeros((50, 64), np.uint8)).save(os.path.join(src, 'masks', 'img003.png'))
  with pytest.raises(UserError, match=r'img003.png is 64x64 but .*masks/img003.png is 50x64; they must match'):
    base.prepare_and_load(build(src, tmp_path))


def test_mask_value_outside_the_mapping_names_file_and_value(tmp_path):
  src = folder(tmp_path)
  mask = np.zeros((64, 64), np.uint8)
  mask[3, 3] = 77
  Image.fromarray(mask).save(os.path.join(src, 'masks', 'img002.png'))
  with pytest.raises(UserError, match=r'masks/img002.png holds the value 77, which is not in the class mapping'):
    base.prepare_and_load(build(src, tmp_path))


def test_truncated_file_is_named(tmp_path):
  src = folder(tmp_path)
  path = os.path.join(src, 'images', 'img001.png')
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(UserError, match=r'cannot read .*images/img001.png'):
    base.prepare_and_load(build(src, tmp_path))


def test_too_few_images_and_empty_split(tmp_path):
  src = folder(tmp_path, n=3)
  with pytest.raises(UserError, match=r'the validation split of .* is empty \(3 images'):
    build(src, tmp_path)
  os.makedirs(os.path.join(src, 'splits'))
  for split, names in (('train', 'img000\n'), ('validation', 'img001\n'), ('test', '')):
    with open(os.path.join(src, 'splits', f'{split}.txt'), 'w') as f:
      f.write(names)
  with pytest.raises(UserError, match=r'the test split of .* is empty'):
    build(src, tmp_path)


def test_split_file_naming_an_absent_image(tmp_path):
  src = folder(tmp_path, n=3)
  os.makedirs(os.path.join(src, 'splits'))
  for split, names in (('train', 'img000\nimg009\n'), ('validation', 'img001\n'), ('test', 'img002\n')):
    with open(os.path.join(src, 'splits', f'{split}.txt'), 'w') as f:
      f.write(names)
  with pytest.raises(UserError, match=r"train.txt names 'img009', which has no image and mask pair"):
    build(src, tmp_path)


def test_interrupted_preparation_is_redone(tmp_path, monkeypatch):
  src = folder(tmp_path, n=10)
  calls = {'n': 0}
  real = tiling.tiles

  def failing(*args, **kwargs):
    calls['n'] += 1
    if calls['n'] == 5:
      raise KeyboardInterrupt  # as if the user pressed Ctrl-C half-way
    return real(*args, **kwargs)

  monkeypatch.setattr(tiling, 'tiles', failing)
  with pytest.raises(KeyboardInterrupt):
    base.prepare_and_load(build(src, tmp_path))
  monkeypatch.setattr(tiling, 'tiles', real)
  builder = build(src, tmp_path)
  assert not os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))  # nothing trusted
  loaded = base.prepare_and_load(builder)
  assert {k: len(v.images) for k, v in loaded.items()} == {'train': 28, 'validation': 4, 'test': 8}
