"""The Drosophila VNC builder on the real data in ../shared (or $FREM_DROSOPHILA_DIR)."""

import os

import numpy as np
import pytest

from frem_jax.datasets import base
from frem_jax.datasets import drosophila_vnc as dv
from frem_jax.errors import UserError
from tests.tiny import DATA_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def source_dir():
  path = os.environ.get(dv.ENV_VAR) or os.path.join(ROOT, '..', 'shared', 'data', 'drosophila-vnc')
  if not os.path.isdir(os.path.join(path, 'stack1')):
    if os.environ.get('CI') == 'true':
      pytest.fail(f'the Drosophila data is missing at {path}; CI must have ../shared beside the checkout')
    pytest.skip(f'no Drosophila data at {path} (set {dv.ENV_VAR})')
  return path


def test_class_shares_over_all_20_sections():
  counts = np.zeros(4, np.int64)
  for s in range(20):
    _, label = dv.read_section(source_dir(), s)
    counts += np.bincount(label.ravel(), minlength=4)
  shares = 100 * counts / counts.sum()
  np.testing.assert_allclose(shares, [74.06, 20.01, 5.38, 0.56], atol=0.005)


@pytest.fixture(scope='module')
def prepared():
  builder = dv.DrosophilaVnc(source_dir=source_dir(), tile_size=256, data_dir=DATA_DIR)
  return base.prepare_and_load(builder)


def test_split_by_section_with_16_tiles_each(prepared):
  assert {k: len(v.images) for k, v in prepared.items()} == {'train': 224, 'validation': 32, 'test': 64}
  for split, sections in dv.SECTIONS.items():
    assert sorted(set(prepared[split].sources.tolist())) == list(sections)
  assert not set(dv.SECTIONS['train']) & (set(dv.SECTIONS['validation']) | set(dv.SECTIONS['test']))
  assert prepared['train'].images.shape[1:] == (256, 256, 1) and prepared['train'].images.dtype == np.uint8


def test_tiles_are_crops_of_the_section_and_reassemble_exactly(prepared):
  images, masks, sections = dv.full_sections(prepared['test'], 256)
  assert sections.tolist() == [16, 17, 18, 19]
  for k, s in enumerate(sections):
    image, label = dv.read_section(source_dir(), int(s))
    np.testing.assert_array_equal(images[k], image)
    np.testing.assert_array_equal(masks[k], label)
  split = prepared['test']
  i = int(np.flatnonzero((split.sources == 17) & (split.tiles == 6))[0])  # row 1, column 2
  image, label = dv.read_section(source_dir(), 17)
  np.testing.assert_array_equal(split.images[i], image[256:512, 512:768])
  np.testing.assert_array_equal(split.masks[i], label[256:512, 512:768])


def test_missing_source_folder_says_where_the_data_comes_from(tmp_path):
  with pytest.raises(UserError, match=r'stack1/raw does not exist; download the .*doi:10.6084/m9.figshare.856713'):
    dv.DrosophilaVnc(source_dir=str(tmp_path), data_dir=str(tmp_path / 'd'))
  with pytest.raises(UserError, match='dataset.source_dir is not set for drosophila_vnc'):
    dv.check_source('')
