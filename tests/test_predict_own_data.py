"""Your own data start to finish: a cell_folder run with 0/255 masks scored on those very masks,
class-index masks, --overlay, --source_dir, each bad mask, the progress bar and orbax's save warning."""

import json
import logging
import os
import subprocess
import sys
import time
import types

import ml_collections
import numpy as np
from PIL import Image
import pytest
from tqdm import tqdm

from frem_jax import checkpointing
from frem_jax import metrics
from frem_jax import palette
from frem_jax import predict
from frem_jax import train
from frem_jax.train import lib as train_lib
from frem_jax.datasets import image_io
from frem_jax.errors import UserError
from frem_jax.predict import masks as run_masks
from frem_jax.predict import overlay
from tests.datasets.folders import write_folder
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ((0, 'background'), (255, 'cell'))


class RecordingBar(tqdm):
  """tqdm that keeps every postfix it was given."""
  postfixes = []

  def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
    RecordingBar.postfixes.append(dict(kwargs))
    return super().set_postfix(ordered_dict, refresh, **kwargs)


@pytest.fixture(scope='module')
def folder_run(tmp_path_factory):
  """A cell_folder of 6 images 40x48 with masks of 0 and 255, trained 2 epochs (validated at epoch 2)."""
  root = tmp_path_factory.mktemp('own')
  src = write_folder(str(root / 'src'), 6, size=(40, 48), values=(0, 255, 255))
  config = tiny_config(**{'num_epochs': 2, 'eval_every_epochs': 2, 'dataset.name': 'cell_folder',
                          'dataset.source_dir': src, 'dataset.classes': CLASSES,
                          'dataset.data_dir': str(root / 'tfds')})
  workdir = str(root / 'run')
  with pytest.MonkeyPatch.context() as mp:
    RecordingBar.postfixes = []
    mp.setattr(train_lib, 'tqdm', RecordingBar)  # the module whose loop shows the bar
    train.train_and_evaluate(config, workdir)
  return src, workdir, list(RecordingBar.postfixes)


def run_predict(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'frem_jax.predict', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def class_map(path) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im)


def test_the_training_masks_score_the_run_as_they_are(folder_run, tmp_path):
  src, workdir, _ = folder_run
  out = tmp_path / 'out'
  proc = run_predict(f'--workdir={workdir}', f'--input={src}/images', f'--masks={src}/masks',
                     f'--output={out}', '--overlap=8', '--overlay')
  assert proc.returncode == 0, proc.stderr
  assert 'mIoU over all images' in proc.stdout
  report = json.loads((out / 'iou.json').read_text())
  assert report['masks'] == {'read_as': 'dataset.classes', 'values': {'0': 'background', '255': 'cell'}}
  assert sorted(report['images']) == [f'img{i:03d}' for i in range(6)]
  total = np.zeros((2, 2), np.int64)
  for stem in report['images']:
    truth = (class_map(f'{src}/masks/{stem}.png') == 255).astype(np.uint8)
    confusion = np.asarray(metrics.confusion_matrix(truth, class_map(out / f'{stem}.png'), 2), np.int64)
    assert report['images'][stem] == metrics.summarize(confusion, ('background', 'cell'))
    total += confusion
  assert report['overall']['confusion_matrix'] == total.tolist()
  assert total.sum() == 6 * 40 * 48 and total[1].sum() > 0  # every pixel, and cells among them
  # The overlay: the input tinted by the class map just written.
  for stem in ('img000', 'img005'):
    with Image.open(out / f'{stem}_overlay.png') as im:
      assert im.mode == 'RGB' and im.size == (48, 40)
      written = np.asarray(im)
    colours = np.asarray(palette.palette(), np.uint8).reshape(-1, 3)
    expected = overlay.overlay(image_io.read_image(f'{src}/images/{stem}.png'),
                               class_map(out / f'{stem}.png'), colours)
    np.testing.assert_array_equal(written, expected)


def test_class_index_masks_give_the_same_scores_and_say_so(folder_run, tmp_path):
  src, workdir, _ = folder_run
  (tmp_path / 'indices').mkdir()
  for stem in ('img000', 'img001'):
    Image.fromarray((class_map(f'{src}/masks/{stem}.png') == 255).astype(np.uint8)).save(
        tmp_path / 'indices' / f'{stem}.png')
  (tmp_path / 'in').mkdir()
  for stem in ('img000', 'img001'):
    os.symlink(f'{src}/images/{stem}.png', tmp_path / 'in' / f'{stem}.png')
  by_index = predict.predict_files(workdir, str(tmp_path / 'in'), str(tmp_path / 'a'), 8,
                                   masks=str(tmp_path / 'indices'))
  assert by_index['masks']['read_as'] == 'class indices'
  assert by_index['masks']['values'] == {'0': 'background', '1': 'cell'}
  (tmp_path / 'values').mkdir()
  for stem in ('img000', 'img001'):
    os.symlink(f'{src}/masks/{stem}.png', tmp_path / 'values' / f'{stem}.png')
  by_value = predict.predict_files(workdir, str(tmp_path / 'in'), str(tmp_path / 'b'), 8,
                                   masks=str(tmp_path / 'values'))
  assert by_value['masks']['read_as'] == 'dataset.classes'
  assert by_index['overall'] == by_value['overall'] and by_index['images'] == by_value['images']


def bad_folder(src, tmp_path, change):
  """A copy of the run's folder (images and masks as links) with one change; returns it."""
  bad = tmp_path / 'bad'
  for sub in ('images', 'masks'):
    (bad / sub).mkdir(parents=True)
    for name in os.listdir(f'{src}/{sub}'):
      os.symlink(f'{src}/{sub}/{name}', bad / sub / name)
  change(bad)
  return bad


def replace_mask(values):
  def change(bad):
    os.remove(bad / 'masks' / 'img002.png')
    Image.fromarray(np.asarray(values, np.uint8)).save(bad / 'masks' / 'img002.png')
  return change


BAD_MASKS = {
    'unmapped_value': (replace_mask(np.where(np.arange(40 * 48).reshape(40, 48) % 7, 255, 7)),
                       r"bad/masks/img002.png holds the value 7, which is not in the class mapping "
                       r"\[0, 255\]; masks must hold the run's dataset.classes values \[0, 255\] or "
                       r"class indices 0..1 \(one convention for all masks\); fix the mask"),
    'mask_of_another_size': (replace_mask(np.zeros((40, 40))),
                             r'mask .*bad/masks/img002.png is 40x40 but its image .*bad/images/img002.png '
                             r'is 40x48; the mask must match its image'),
    'mask_for_a_missing_image': (lambda bad: os.remove(bad / 'images' / 'img004.png'),
                                 r'mask .*bad/masks/img004.png has no image in --input=.*bad/images; '
                                 r'add img004.png there or remove the mask'),
    'image_without_a_mask': (lambda bad: os.remove(bad / 'masks' / 'img001.png'),
                             r'bad/images/img001.png has no mask in --masks=.*bad/masks; add img001.png'),
}


@pytest.mark.parametrize('name', sorted(BAD_MASKS))
def test_each_bad_mask_is_one_line_before_anything_is_written(folder_run, tmp_path, name):
  src, workdir, _ = folder_run
  change, message = BAD_MASKS[name]
  bad = bad_folder(src, tmp_path, change)
  with pytest.raises(UserError, match=message):
    predict.predict_files(workdir, str(bad / 'images'), str(tmp_path / 'out'), 8, masks=str(bad / 'masks'))
  assert not (tmp_path / 'out').exists()


def test_the_unmapped_value_through_the_command_line(folder_run, tmp_path):
  src, workdir, _ = folder_run
  bad = bad_folder(src, tmp_path, BAD_MASKS['unmapped_value'][0])
  proc = run_predict(f'--workdir={workdir}', f'--input={bad}/images', f'--masks={bad}/masks',
                     f'--output={tmp_path}/out', '--overlap=8')
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert errors == [f'error: {bad}/masks/img002.png holds the value 7, which is not in the class mapping '
                    "[0, 255]; masks must hold the run's dataset.classes values [0, 255] or class "
                    'indices 0..1 (one convention for all masks); fix the mask']
  assert not (tmp_path / 'out').exists()


def test_source_dir_scores_the_whole_folder_like_input_and_masks(folder_run, tmp_path):
  src, workdir, _ = folder_run
  whole = predict.predict_files(workdir, '', str(tmp_path / 'whole'), 8, source_dir=src)
  pairs = predict.predict_files(workdir, f'{src}/images', str(tmp_path / 'pairs'), 8, masks=f'{src}/masks')
  assert sorted(whole['images']) == [f'img{i:03d}' for i in range(6)]
  assert whole == pairs
  assert json.loads((tmp_path / 'whole' / 'iou.json').read_text()) == whole
  # The same layout rules as training: a mask without its image is named.
  bad = bad_folder(src, tmp_path, lambda b: os.remove(b / 'images' / 'img003.png'))
  with pytest.raises(UserError, match=r'bad/masks/img003.png has no image in .*bad/images; add the image'):
    predict.predict_files(workdir, '', str(tmp_path / 'out'), 8, source_dir=str(bad))
  with pytest.raises(UserError, match='--source_dir takes the images and masks from a folder'):
    predict.predict_files(workdir, f'{src}/images', str(tmp_path / 'out'), 8, source_dir=src)
  with pytest.raises(UserError, match='give --input .* or --source_dir'):
    predict.predict_files(workdir, '', str(tmp_path / 'out'), 8)
  assert not (tmp_path / 'out').exists()


def test_the_progress_bar_shows_this_epochs_validation_and_the_best_apart(folder_run):
  _, workdir, postfixes = folder_run
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = [json.loads(l) for l in f]
  assert [p['val_miou'] for p in postfixes][:1] == ['n/a']  # epoch 1 was not validated
  assert postfixes[0]['best_val_miou'] == 'n/a'
  assert postfixes[1]['val_miou'] == f'{logged[1]["val/miou"]:.4f}'
  assert postfixes[1]['best_val_miou'] == f'{logged[1]["val/miou"]:.4f}'
  assert len(postfixes) == 2


def config_of(name, classes=()):
  return ml_collections.ConfigDict({'dataset': {'name': name, 'classes': classes}})


def test_the_mask_format_is_chosen_once_for_all_masks():
  cells = config_of('cell_folder', ((0, 'background'), (255, 'cell')))
  assert run_masks.choose_format({'a': [0, 255], 'b': [0]}, cells, 2).name == 'dataset.classes'
  assert run_masks.choose_format({'a': [0, 1], 'b': [0]}, cells, 2).name == 'class indices'
  # Most masks hold class indices: the odd one out is named, by the class-index mapping.
  with pytest.raises(UserError, match=r'c holds the value 255, which is not in the class mapping \[0, 1\]'):
    run_masks.choose_format({'a': [0, 1], 'b': [1], 'c': [0, 255]}, cells, 2)
  # Where values and indices coincide (mouse liver's defaults), there is one format.
  mouse = run_masks.formats(config_of('mouse_liver'), 3)
  assert [(f.name, f.mapping) for f in mouse] == [('dataset.classes', {0: 0, 1: 1, 2: 2})]
  # Drosophila's masks (as predict takes them) are class indices only.
  with pytest.raises(UserError, match=r'm holds the value 4, .*masks must hold class indices 0..3 \('):
    run_masks.choose_format({'m': [0, 4]}, config_of('drosophila_vnc'), 4)


def test_overlay_pixels():
  image = np.array([[[10.], [110.]], [[60.], [210.]]], np.float32)  # stretched: 0, 127.5, 63.75, 255
  classes = np.array([[0, 1], [2, 0]])
  colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]])
  got = overlay.overlay(image, classes, colours, alpha=0.4)
  np.testing.assert_array_equal(got, [
      [[0, 0, 0], [179, 77, 77]],        # 0.6 * 128 + 0.4 * (255, 0, 0) = (178.8, 76.8, 76.8)
      [[38, 140, 38], [255, 255, 255]],  # 0.6 * 64 + 0.4 * (0, 255, 0) = (38.4, 140.4, 38.4)
  ])
  rgb = np.zeros((1, 2, 3), np.float32)
  rgb[0, 1] = (100, 50, 0)
  np.testing.assert_array_equal(overlay.display_rgb(rgb), [[[0, 0, 0], [255, 128, 0]]])
  assert overlay.display_rgb(np.full((2, 2, 1), 7.0)).max() == 0  # a constant image is black


def test_slow_saves_do_not_warn_of_waiting_for_a_previous_save(tmp_path, monkeypatch):
  """A save that takes over orbax's 1 s threshold (a slow disk) must not be reported at the next save."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  finalize = ocp.CheckpointManager._finalize

  def slow_finalize(self, *args, **kwargs):
    time.sleep(1.2)
    return finalize(self, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, '_finalize', slow_finalize)
  records = []
  handler = logging.Handler(logging.WARNING)
  handler.emit = records.append
  logging.getLogger('absl').addHandler(handler)
  state = types.SimpleNamespace(step=np.int32(0), params={'w': np.zeros(3, np.float32)},
                                batch_stats={'m': np.zeros(2, np.float32)}, opt_state={'v': np.ones(1)})
  manager = checkpointing.make_manager(str(tmp_path))
  try:
    for epoch in (1, 2, 3):
      checkpointing.save(manager, epoch, state, {'epoch': epoch}, 0.1 * epoch)
  finally:
    manager.close()
    logging.getLogger('absl').removeHandler(handler)
  assert manager.latest_step() == 3
  assert [r.getMessage() for r in records if 'previous save' in r.getMessage()] == []
