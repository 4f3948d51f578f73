"""The paper's configs train end to end at tiny scale: mouse (stand-in folder), Drosophila (real data), a user folder."""

import numpy as np
from PIL import Image
import pytest

from configs import demo, drosophila, folder_example, mouse
from frem_jax import datasets
from frem_jax.search import space as search_space
from frem_jax import train
from frem_jax.config_validation import validate_config
from tests.datasets.folders import write_folder
from tests.datasets.test_drosophila_vnc import source_dir as drosophila_dir
from tests.tiny import DATA_DIR, FEATURES, override


def shrink(config, **overrides):
  config.num_epochs = 2
  config.batch_size = 4
  config.model.features = FEATURES
  config.model.renorm_warmup_steps = 4
  config.frem.num_selected = min(config.frem.num_selected, 16)
  config.dataset.data_dir = DATA_DIR
  return override(config, overrides)


def test_variants_carry_the_papers_values():
  assert (mouse.get_config().frem.num_selected, mouse.get_config().frem.factor) == (162, 632.0)
  assert (drosophila.get_config().frem.num_selected, drosophila.get_config().frem.factor) == (8, 250.0)
  assert not mouse.get_config('baseline').frem.enabled
  sv = drosophila.get_config('supervision')
  assert sv.supervision.enabled and sv.supervision.weight == 0.2781 and not sv.frem.enabled
  assert mouse.get_config('supervision').supervision.weight == 0.3257
  fixed = mouse.get_config('fixed')
  assert (fixed.frem.num_selected, fixed.frem.factor, fixed.frem.mode) == (10, 10000.0, 'fixed')
  for config in (mouse.get_config(v) for v in mouse.VARIANTS):
    validate_config(config)
    assert config.num_epochs == 2000 and config.model.norm == 'batch_renorm'
  with pytest.raises(ValueError, match="unknown variant 'x'"):
    mouse.get_config('x')


def test_demo_supervision_searches_lambda_like_the_paper_configs():
  assert search_space.resolve(demo.get_config('supervision'))['ranges'] == {'weight': [0.0, 1.0]}
  assert search_space.resolve(demo.get_config())['ranges'] == {'num_selected': [1, 128], 'factor': [1.0, 1000.0]}


def test_paper_configs_search_the_papers_spaces():
  """(B, X) with 50 trials for the FREM configs, λ with 15 for the SuperVision ones."""
  for module in (mouse, drosophila):
    frem = search_space.resolve(module.get_config())
    assert frem['ranges'] == {'num_selected': [1, 512], 'factor': [1.0, 1000.0]}
    assert frem['max_evals'] == 50
    sv = search_space.resolve(module.get_config('supervision'))
    assert sv['ranges'] == {'weight': [0.0, 1.0]} and sv['max_evals'] == 15


def test_mouse_config_trains_on_a_stand_in_folder(tmp_path):
  src = write_folder(str(tmp_path / 'mouse'), 50, size=(32, 32), mask_dir='labels')
  config = shrink(mouse.get_config(), **{'dataset.source_dir': src, 'dataset.image_size': 32})
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['class_names'] == ['background', 'membrane', 'nucleus']
  assert results['test']['miou'] is not None
  # The documented split: 50 images -> 35/5/10 by image (one 32² tile each here), labels 0/1/2 as
  # background/membrane/nucleus.
  data = datasets.load_dataset(config, DATA_DIR)
  assert data.class_names == ('background', 'membrane', 'nucleus')
  assert {k: len(v) for k, v in data.splits.items()} == {'train': 35, 'validation': 5, 'test': 10}
  assert {k: len(set(v.sources.tolist())) for k, v in data.splits.items()} == {'train': 35, 'validation': 5, 'test': 10}
  written = sum(np.bincount(np.asarray(Image.open(f'{src}/labels/img{i:03d}.png')).ravel(), minlength=3)
                for i in range(50))
  loaded = sum(np.bincount(v.masks.ravel(), minlength=3) for v in data.splits.values())
  np.testing.assert_array_equal(loaded, written)


def test_drosophila_config_trains_on_a_few_real_tiles(tmp_path):
  config = shrink(drosophila.get_config('supervision'), **{
      'dataset.source_dir': drosophila_dir(), 'dataset.limit': 16, 'eval.full_section_overlap': 0})
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['class_names'] == ['background', 'membrane', 'mitochondria', 'synapse']
  # The 16 test tiles are section 16 whole; with no overlap its windows are exactly those tiles.
  full = results['test_full_sections']
  assert full['sections'] == [16] and full['overlap'] == 0
  assert full['iou_per_class'] == results['test']['iou_per_class']
  assert set(results['test']['iou_per_class']) == set(results['class_names'])
  assert results['num_params'] > results['num_params_inference']  # the SuperVision head


def test_folder_example_config_trains_on_a_users_folder(tmp_path):
  src = write_folder(str(tmp_path / 'mine'), 10, size=(40, 70), values=(0, 255, 255))
  config = shrink(folder_example.get_config(), **{'dataset.source_dir': src, 'dataset.image_size': 32})
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['class_names'] == ['background', 'membrane']
  # The documented split: 70/10/20 by image (7/1/2 of 10), each 40x70 image cut into 2x3 tiles of 32².
  data = datasets.load_dataset(config, DATA_DIR)
  assert data.class_names == ('background', 'membrane')
  assert {k: len(set(v.sources.tolist())) for k, v in data.splits.items()} == {'train': 7, 'validation': 1, 'test': 2}
  assert {k: len(v) for k, v in data.splits.items()} == {'train': 42, 'validation': 6, 'test': 12}
  assert all(set(np.unique(v.masks).tolist()) == {0, 1} for v in data.splits.values())  # 255 -> membrane
