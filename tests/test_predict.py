"""Prediction with a trained run: sliding windows, the predict command line, its outputs and errors."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from configs import drosophila
from frem_jax import build
from frem_jax import checkpointing
from frem_jax import metrics
from frem_jax import predict
from frem_jax import sliding_window
from frem_jax import train
from frem_jax import trained_run
from frem_jax.cpu import benchmark
from frem_jax.datasets import drosophila_vnc as dv
from frem_jax.errors import UserError
from tests.datasets.test_drosophila_vnc import source_dir
from tests.tiny import DATA_DIR, FEATURES, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_predict(*args) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, '-m', 'frem_jax.predict', *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
  out, err = proc.communicate(timeout=300)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def save_png(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """A synthetic-cells run at 32² tiles (1 channel, 3 classes), trained once."""
  workdir = str(tmp_path_factory.mktemp('predict') / 'tiny')
  train.train_and_evaluate(tiny_config(num_epochs=1), workdir)
  return workdir


@pytest.fixture(scope='module')
def loaded(tiny_run):
  return trained_run.load(tiny_run)


def test_windows_of_a_pointwise_model_give_back_the_pointwise_result():
  rng = np.random.default_rng(0)
  shapes = []

  def double(windows):
    shapes.append(windows.shape)
    return 2 * windows

  for (h, w), overlap in [((45, 70), 0), ((45, 70), 7), ((10, 13), 3), ((64, 96), 0), ((64, 96), 31)]:
    image = rng.random((h, w, 2)).astype(np.float32)
    np.testing.assert_array_equal(sliding_window.predict_logits(double, image, 32, overlap, 4), 2 * image)
  assert {s[1:] for s in shapes} == {(32, 32, 2)}
  with pytest.raises(UserError, match=r'overlap=32 must be in \[0, 32\)'):
    sliding_window.predict_logits(double, image, 32, 32)


def add_window_mean(windows):
  """A stand-in model whose value at a pixel depends on the window: the pixel plus its window's mean."""
  return windows + windows.mean(axis=(1, 2), keepdims=True)


def test_overlapping_windows_are_averaged():
  image = np.random.default_rng(4).random((48, 48, 1)).astype(np.float32)
  # Tiles of 32 overlapping by 16: windows start at 0 and 16 on each axis (no padding).
  mean = {(y, x): image[y:y + 32, x:x + 32].mean() for y in (0, 16) for x in (0, 16)}
  expected = image.copy()
  expected[:16, :16] += mean[0, 0]
  expected[:16, 16:32] += (mean[0, 0] + mean[0, 16]) / 2
  expected[:16, 32:] += mean[0, 16]
  expected[16:32, :16] += (mean[0, 0] + mean[16, 0]) / 2
  expected[16:32, 16:32] += sum(mean.values()) / 4
  expected[16:32, 32:] += (mean[0, 16] + mean[16, 16]) / 2
  expected[32:, :16] += mean[16, 0]
  expected[32:, 16:32] += (mean[16, 0] + mean[16, 16]) / 2
  expected[32:, 32:] += mean[16, 16]
  assert len({round(float(m), 6) for m in mean.values()}) == 4
  for batch_size in (1, 3, 8):  # 3: the second batch is padded
    np.testing.assert_allclose(sliding_window.predict_logits(add_window_mean, image, 32, 16, batch_size),
                               expected, rtol=1e-6, atol=1e-6)


def test_overlap_0_on_aligned_tiles_equals_each_crop_predicted_alone(loaded):
  assert (loaded.image_size, loaded.in_channels, loaded.num_classes) == (32, 1, 3)
  image = np.random.default_rng(1).random((128, 128, 1)).astype(np.float32)
  tiled = sliding_window.predict_logits(loaded.logits, image, 32, 0)
  assert tiled.shape == (128, 128, 3) and tiled.dtype == np.float32
  for y in range(0, 128, 32):
    for x in range(0, 128, 32):
      alone = loaded.logits(image[None, y:y + 32, x:x + 32])[0]
      np.testing.assert_allclose(tiled[y:y + 32, x:x + 32], alone, rtol=1e-5, atol=1e-5)
  # Two windows overlapping by 16 columns: there the logits are the mean of both windows' own.
  strip = image[:32, :48]
  overlapped = sliding_window.predict_logits(loaded.logits, strip, 32, 16)
  left, right = loaded.logits(np.stack([strip[:, :32], strip[:, 16:]]))
  assert not np.allclose(left[:, 16:], right[:, :16], atol=1e-3)
  np.testing.assert_allclose(overlapped[:, :16], left[:, :16], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(overlapped[:, 16:32], (left[:, 16:] + right[:, :16]) / 2, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(overlapped[:, 32:], right[:, 16:], rtol=1e-5, atol=1e-5)


def test_an_image_of_odd_size_comes_back_at_its_size(loaded):
  image = np.random.default_rng(2).random((45, 70, 1)).astype(np.float32)
  class_map, probs = predict.predict_image(loaded, image, overlap=8)
  assert class_map.shape == (45, 70) and class_map.dtype == np.uint8
  assert probs.shape == (45, 70, 3) and probs.dtype == np.float32
  logits = sliding_window.predict_logits(loaded.logits, image, 32, 8)
  np.testing.assert_array_equal(class_map, logits.argmax(-1))
  small, _ = predict.predict_image(loaded, image[:20, :9], overlap=0)
  assert small.shape == (20, 9)


def test_an_unfinished_run_and_a_bad_overlap_are_user_errors(tiny_run, tmp_path):
  unfinished = tmp_path / 'unfinished'
  shutil.copytree(tiny_run, unfinished)
  os.remove(unfinished / 'results.json')
  with pytest.raises(UserError, match='has no results.json: its training has not finished'):
    trained_run.load(str(unfinished))
  save_png(tmp_path / 'a.png', np.zeros((40, 40)))
  with pytest.raises(UserError, match=r'--overlap=32 must be in \[0, 32\)'):
    predict.predict_files(tiny_run, str(tmp_path / 'a.png'), str(tmp_path / 'out'), overlap=32)


def test_bad_masks_and_an_output_over_the_input_are_refused_before_writing(tiny_run, tmp_path):
  (tmp_path / 'in').mkdir()
  (tmp_path / 'masks').mkdir()
  save_png(tmp_path / 'in' / 'a.png', np.zeros((40, 40)))
  save_png(tmp_path / 'in' / 'b.png', np.zeros((40, 40)))
  save_png(tmp_path / 'masks' / 'a.png', np.full((40, 40), 5))
  out = str(tmp_path / 'out')
  with pytest.raises(UserError, match=r'in/b.png has no mask in --masks=.*add b.png'):
    predict.predict_files(tiny_run, str(tmp_path / 'in'), out, 8, masks=str(tmp_path / 'masks'))
  save_png(tmp_path / 'masks' / 'b.png', np.zeros((40, 40)))
  with pytest.raises(UserError, match=r'masks/a.png holds the value 5, which is not in the class '
                                      r'mapping \[0, 1, 2\]; masks must hold class indices 0..2 \('):
    predict.predict_files(tiny_run, str(tmp_path / 'in'), out, 8, masks=str(tmp_path / 'masks'))
  with pytest.raises(UserError, match='would overwrite the input'):
    predict.predict_files(tiny_run, str(tmp_path / 'in'), str(tmp_path / 'in'), 8)
  assert not os.path.exists(out)


def bad_inputs(tiny_run, tmp):
  """{name: (CLI args, expected stderr)} of each bad input; each would write to tmp/out_<name>."""
  gray, rgb = tmp / 'gray.png', tmp / 'rgb.png'
  save_png(gray, np.arange(48 * 40).reshape(48, 40) % 256)
  save_png(rgb, np.zeros((48, 40, 3)))
  (tmp / 'masks').mkdir()
  save_png(tmp / 'masks' / 'gray.png', np.zeros((40, 40)))
  (tmp / 'empty_run').mkdir()
  other = tmp / 'other_run'
  shutil.copytree(tiny_run, other)
  config = json.loads((other / 'config.json').read_text())
  config['model']['features'] = [4, 8, 32]
  (other / 'config.json').write_text(json.dumps(config))
  (tmp / 'a_file').write_text('x')
  cases = {
      'no_checkpoint': ([f'--workdir={tmp}/empty_run', f'--input={gray}'],
                        f'error: {tmp}/empty_run has no checkpoint: train it first with '
                        'python -m frem_jax.train'),
      'other_config': ([f'--workdir={other}', f'--input={gray}'],
                       'was made with a different model config than its config.json'),
      'channels': ([f'--workdir={tiny_run}', f'--input={rgb}'],
                   f'error: {rgb} has 3 channel(s) but the run was trained on 1-channel images'),
      'mask_size': ([f'--workdir={tiny_run}', f'--input={gray}', f'--masks={tmp}/masks'],
                    f'error: mask {tmp}/masks/gray.png is 40x40 but its image {gray} is 48x40'),
      'missing_input': ([f'--workdir={tiny_run}', f'--input={tmp}/nothere.png'],
                        f'error: --input={tmp}/nothere.png does not exist'),
  }
  for name, (args, _) in cases.items():
    args.append(f'--output={tmp}/out_{name}')
  (tmp / 'out_output_is_file').write_text('x')
  cases['output_is_file'] = ([f'--workdir={tiny_run}', f'--input={gray}', f'--output={tmp}/out_output_is_file'],
                             f'error: --output={tmp}/out_output_is_file is an existing file; name a folder')
  return cases


@pytest.fixture(scope='module')
def cli_runs(tiny_run, tmp_path_factory):
  """Every CLI case of the tiny run, started at once (they mostly wait on imports and compiles)."""
  tmp = tmp_path_factory.mktemp('cli')
  cases = bad_inputs(tiny_run, tmp)
  (tmp / 'in').mkdir()
  save_png(tmp / 'in' / 'x.png', np.random.default_rng(3).integers(0, 256, (45, 70)))
  procs = {name: start_predict(*args, '--overlap=8') for name, (args, _) in cases.items()}
  # No --overlap: the default must fit the run's 32² tiles (a fixed 32 pixels was refused).
  procs['raw'] = start_predict(f'--workdir={tiny_run}', f'--input={tmp}/in', f'--output={tmp}/raw',
                               '--raw', '--probabilities')
  procs['half'] = start_predict(f'--workdir={tiny_run}', f'--input={tmp}/in', f'--output={tmp}/half',
                                '--probabilities', '--half_precision=true')
  results = {name: finish(p) for name, p in procs.items()}
  return tmp, {name: message for name, (_, message) in cases.items()}, results


@pytest.mark.parametrize('name', ['no_checkpoint', 'other_config', 'channels', 'mask_size',
                                  'output_is_file', 'missing_input'])
def test_bad_input_is_one_line_and_exit_1(cli_runs, name):
  tmp, messages, results = cli_runs
  proc = results[name]
  assert proc.returncode == 1, proc.stderr
  assert messages[name] in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert len([l for l in proc.stderr.splitlines() if l.startswith('error:')]) == 1
  out = tmp / f'out_{name}'
  assert out.is_file() if name == 'output_is_file' else not out.exists()  # nothing written


def test_raw_masks_and_probabilities(cli_runs, loaded):
  tmp, _, results = cli_runs
  assert results['raw'].returncode == 0, results['raw'].stderr
  with Image.open(tmp / 'raw' / 'x.png') as im:
    assert im.mode == 'L' and im.size == (70, 45)
    classes = np.asarray(im)
  probs = np.load(tmp / 'raw' / 'x.npy')
  assert probs.shape == (45, 70, 3) and probs.dtype == np.float32
  # The model's own softmax for that image (read as the CLI reads it, windows overlapping by the
  # default for 32² tiles: 4 pixels).
  assert predict.default_overlap(32) == 4 and predict.default_overlap(256) == 32
  with Image.open(tmp / 'in' / 'x.png') as im:
    image = np.asarray(im, np.float32)[..., None]
  logits = sliding_window.predict_logits(loaded.logits, image, 32, 4)
  other = sliding_window.predict_logits(loaded.logits, image, 32, 8)
  assert not np.allclose(logits, other, rtol=1e-3, atol=1e-3)  # so the overlap used is told apart
  np.testing.assert_allclose(probs, np.asarray(jax.nn.softmax(logits, axis=-1)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  chosen = np.take_along_axis(probs, classes[..., None].astype(np.int64), -1)[..., 0]
  np.testing.assert_allclose(chosen, probs.max(-1), atol=1e-6)  # the class of highest probability
  assert not os.path.exists(tmp / 'raw' / 'iou.json')


def test_a_float32_run_predicts_in_bfloat16_on_request(cli_runs, tiny_run):
  tmp, _, results = cli_runs
  assert results['half'].returncode == 0, results['half'].stderr
  half = trained_run.load(tiny_run, half_precision=True)
  assert half.config.half_precision and benchmark.model_precision(half.model) == build.precision(half.config)
  with Image.open(tmp / 'in' / 'x.png') as im:
    image = np.asarray(im, np.float32)[..., None]
  logits = sliding_window.predict_logits(half.logits, image, 32, predict.default_overlap(32))
  np.testing.assert_allclose(np.load(tmp / 'half' / 'x.npy'), np.asarray(jax.nn.softmax(logits, axis=-1)),
                             rtol=1e-5, atol=1e-6)
  # Near the float32 run's (this image is noise, far from the training images: measured, the
  # probabilities differ by 0.002 on average, 0.33 at most, and 0.1 % of the classes flip).
  half_probs, full_probs = np.load(tmp / 'half' / 'x.npy'), np.load(tmp / 'raw' / 'x.npy')
  assert np.abs(half_probs - full_probs).mean() <= 0.02
  assert (half_probs.argmax(-1) == full_probs.argmax(-1)).mean() >= 0.95


@pytest.fixture(scope='module')
def half_run(tmp_path_factory):
  """The tiny run trained with half_precision."""
  workdir = str(tmp_path_factory.mktemp('predict') / 'half')
  results = train.train_and_evaluate(tiny_config(num_epochs=1, half_precision=True), workdir)
  return workdir, results


def test_a_bfloat16_run_predicts_in_its_own_precision_or_in_float32(half_run):
  workdir, results = half_run
  assert results['config']['half_precision'] is True and results['test']['miou'] is not None
  own, full = trained_run.load(workdir), trained_run.load(workdir, half_precision=False)
  assert benchmark.model_precision(own.model) == build.precision(own.config)
  assert benchmark.model_precision(full.model) == 'float32'
  # The checkpoint holds float32 parameters and statistics whatever the precision that trained it.
  assert {x.dtype for x in jax.tree.leaves(own.variables)} == {np.dtype(np.float32), np.dtype(np.int32)}
  images = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 1)).astype(np.float32)
  a, b = own.logits(images), full.logits(images)
  assert a.dtype == b.dtype == np.float32
  # Measured: 0.16 apart on average, 2.7 at most, of logits up to 300 (noise images); no class flips.
  np.testing.assert_allclose(a, b, atol=0.05 * np.abs(b).max())
  assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.95


@pytest.mark.parametrize('elsewhere', ['bfloat16', 'bfloat16 convolutions'])
def test_a_bfloat16_run_resumes_only_where_it_computes_as_it_began(half_run, tmp_path, monkeypatch, elsewhere):
  workdir, _ = half_run
  config = tiny_config(num_epochs=2, half_precision=True)
  saved = checkpointing.latest_meta(workdir)['precision']
  assert saved == build.precision(config) in ('bfloat16', 'bfloat16 convolutions')
  train.check_precision(workdir, config)  # here, as it began: resumable
  moved = tmp_path / 'moved'
  shutil.copytree(workdir, moved)
  before = {p: (moved / p).read_bytes() for p in ('config.json', 'metrics.jsonl')}
  # The run moved where half_precision computes otherwise: oneDNN's bfloat16 gained or lost (another
  # CPU, oneDNN installed or removed), another backend or other model.layers.
  monkeypatch.setattr(build, 'cpu_half_precision', lambda c: elsewhere == 'bfloat16 convolutions')
  if elsewhere == saved:
    train.check_precision(str(moved), config)
    return
  with pytest.raises(UserError, match=re.escape(
      f'--workdir={moved} was trained in {build.PRECISIONS[saved]}, and here half_precision=True computes '
      f'{build.PRECISIONS[elsewhere]}; resume it where it computes the same (docs/config.md, half_precision), '
      'or start a new --workdir')):
    train.train_and_evaluate(config, str(moved))
  # Where another model.layers computes as the run began, the line names it.
  monkeypatch.undo()
  monkeypatch.setattr(build, 'cpu_half_precision', lambda c: c.model.layers != 'flax')
  layers = 'flax' if saved == 'bfloat16' else 'auto'
  other = tiny_config(num_epochs=2, half_precision=True,
                      **{'model.layers': 'cpu' if saved == 'bfloat16' else 'flax'})
  with pytest.raises(UserError, match=re.escape(f'; resume it with --config.model.layers={layers}, or start')):
    train.train_and_evaluate(other, str(moved))
  assert {p: (moved / p).read_bytes() for p in before} == before
  assert checkpointing.latest_meta(str(moved))['epoch'] == 1


@pytest.fixture(scope='module')
def drosophila_run(tmp_path_factory):
  """configs/drosophila.py at widths tests.tiny.FEATURES, 256² tiles, 1 epoch on 4 tiles per split."""
  source = source_dir()
  config = drosophila.get_config()
  config.dataset.source_dir = source
  config.dataset.data_dir = DATA_DIR
  config.dataset.limit = 4
  config.model.features = FEATURES
  config.num_epochs = 1
  config.eval_batch_size = 4
  workdir = str(tmp_path_factory.mktemp('dros') / 'run')
  train.train_and_evaluate(config, workdir)
  return source, workdir


def test_drosophila_sections_are_segmented_whole_with_iou(drosophila_run, tmp_path):
  source, workdir = drosophila_run
  (tmp_path / 'in').mkdir()
  (tmp_path / 'masks').mkdir()
  labels = {}
  for section, suffix in ((16, 'tif'), (17, 'png')):
    image, labels[f'{section}'] = dv.read_section(source, section)
    Image.fromarray(image[..., 0]).save(tmp_path / 'in' / f'{section}.{suffix}')
    save_png(tmp_path / 'masks' / f'{section}.png', labels[f'{section}'])
  proc = finish(start_predict(f'--workdir={workdir}', f'--input={tmp_path}/in',
                              f'--output={tmp_path}/out', f'--masks={tmp_path}/masks'))
  assert proc.returncode == 0, proc.stderr
  report = json.loads((tmp_path / 'out' / 'iou.json').read_text())
  assert report['class_names'] == list(dv.CLASS_NAMES) and sorted(report['images']) == ['16', '17']
  total = np.zeros((4, 4), np.int64)
  for stem, label in labels.items():
    with Image.open(tmp_path / 'out' / f'{stem}.png') as im:
      assert im.mode == 'P' and im.size == (1024, 1024)
      predicted = np.asarray(im)
    confusion = np.asarray(metrics.confusion_matrix(label, predicted, 4), np.int64)
    assert report['images'][stem]['miou'] == pytest.approx(metrics.summarize(confusion, dv.CLASS_NAMES)['miou'])
    total += confusion
  assert 0.0 <= report['overall']['miou'] <= 1.0
  assert report['overall']['miou'] == pytest.approx(metrics.summarize(total, dv.CLASS_NAMES)['miou'])
  assert report['overall']['confusion_matrix'] == total.tolist()


def test_a_1024_section_tiled_without_overlap_equals_each_256_crop_predicted_alone(drosophila_run):
  source, workdir = drosophila_run
  run = trained_run.load(workdir)
  image, _ = dv.read_section(source, 18)
  logits = sliding_window.predict_logits(run.logits, image, 256, 0)
  assert logits.shape == (1024, 1024, 4)
  for y, x in ((0, 0), (256, 512), (768, 768)):  # a corner crop and two interior ones
    alone = run.logits(image[None, y:y + 256, x:x + 256])[0]
    np.testing.assert_allclose(logits[y:y + 256, x:x + 256], alone, rtol=1e-5, atol=1e-5)
