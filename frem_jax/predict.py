"""Segmenting images of any size with the best checkpoint of a trained run.

Usage:
  python -m frem_jax.predict --workdir=runs/demo --input=IMAGE_OR_FOLDER --output=OUT
      [--overlap=32] [--raw] [--probabilities] [--masks=MASK_OR_FOLDER]

Writes OUT/<stem>.png per image: a palette PNG whose pixel values are the class
indices and whose palette is palette.PALETTE (with --raw: an 8-bit grayscale PNG of the
class indices); with --probabilities also OUT/<stem>.npy, the softmax float32
[H, W, K]; with --masks (label maps of class indices 0..K-1, same stems) also
OUT/iou.json with the IoU per image and over all images.
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from tqdm import tqdm

from frem_jax import cli
from frem_jax import files
from frem_jax import metrics
from frem_jax import palette
from frem_jax import sliding_window
from frem_jax import trained_run
from frem_jax import workdir as workdir_lib
from frem_jax.datasets import image_io
from frem_jax.errors import UserError

IOU_FILE = 'iou.json'


def predict_image(run: trained_run.TrainedRun, image: np.ndarray,
                  overlap: int) -> tuple[np.ndarray, np.ndarray]:
  """The class map uint8 [H, W] and the softmax float32 [H, W, K] of one raw image [H, W, C].

  Windows of the run's tile size overlap by `overlap` pixels; their logits are
  averaged (see `sliding_window`) before the softmax and the argmax.
  """
  if image.ndim != 3 or image.shape[-1] != run.in_channels:
    raise UserError(f'an image of shape {image.shape} given; the run was trained on '
                    f'{run.in_channels}-channel images [H, W, {run.in_channels}]')
  logits = sliding_window.predict_logits(run.logits, image, run.image_size, overlap)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  probs = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
  return np.argmax(logits, axis=-1).astype(np.uint8), probs


def find_inputs(path: str, flag: str = '--input') -> dict:
  """Stem -> path of the PNG/TIFF images at `path` (one file, or a folder of them)."""
  if not os.path.exists(path):
    raise UserError(f'{flag}={path} does not exist; give a PNG/TIFF image or a folder of them')
  if os.path.isdir(path):
    found = image_io.stems(path)
    if not found:
      raise UserError(f'{flag}={path} holds no PNG or TIFF images')
    return found
  stem, suffix = os.path.splitext(os.path.basename(path))
  if suffix.lower() not in image_io.IMAGE_SUFFIXES:
    raise UserError(f'{flag}={path} is not a PNG or TIFF image ({", ".join(image_io.IMAGE_SUFFIXES)})')
  return {stem: path}


def find_masks(path: str, images: dict) -> dict:
  """Stem -> path of the label map of each image: `path` is a folder of same stems, or one file."""
  if not os.path.exists(path):
    raise UserError(f'--masks={path} does not exist; give a label map or a folder of them')
  if not os.path.isdir(path):
    if len(images) > 1:
      raise UserError(f'--masks={path} is a file but --input holds {len(images)} images; give a '
                      'folder of masks with the images\' stems')
    return {next(iter(images)): path}
  found = image_io.stems(path)
  for stem, image in images.items():
    if stem not in found:
      raise UserError(f'{image} has no mask in --masks={path}; add {stem}.png (class indices) '
                      'or leave out --masks')
  return {stem: found[stem] for stem in images}


def read_mask(path: str, image_path: str, shape: tuple, num_classes: int) -> np.ndarray:
  """A label map of class indices [H, W] (palette PNGs: their indices), checked against its image."""
  try:
    with Image.open(path) as im:
      mask = np.asarray(im).astype(np.int64) if im.mode == 'P' else None
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f'cannot read {path}: {e}; replace the mask') from e
  mask = image_io.read_label_map(path) if mask is None else mask
  if mask.shape != tuple(shape):
    raise UserError(f'mask {path} is {mask.shape[0]}x{mask.shape[1]} but its image {image_path} is '
                    f'{shape[0]}x{shape[1]}; the mask must match its image')
  if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
    bad = int(mask.max() if mask.max() >= num_classes else mask.min())
    raise UserError(f'mask {path} holds the value {bad}; masks must hold class indices '
                    f'0..{num_classes - 1} of the run\'s classes')
  return mask


def _read_checked(path: str, run: trained_run.TrainedRun) -> np.ndarray:
  image = image_io.read_image(path)
  if image.shape[-1] != run.in_channels:
    raise UserError(f'{path} has {image.shape[-1]} channel(s) but the run was trained on '
                    f'{run.in_channels}-channel images; convert it '
                    f'({"to grayscale" if run.in_channels == 1 else "to RGB"})')
  return image


def _save_png(path: str, class_map: np.ndarray, raw: bool) -> None:
  im = Image.fromarray(class_map)
  if not raw:
    im.putpalette(palette.palette())
  files.write_atomic(path, lambda f: im.save(f, format='PNG'))


def predict_files(workdir: str, input_path: str, output: str, overlap: int = 32, raw: bool = False,
                  probabilities: bool = False, masks: str = '') -> dict:
  """Segments the image(s) at `input_path` into `output`; returns the iou.json content ({} without masks)."""
  workdir_lib.check_not_a_file(output, '--output')
  images = find_inputs(input_path)
  mask_paths = find_masks(masks, images) if masks else {}
  outputs = {os.path.realpath(os.path.join(output, f'{s}.{e}')) for s in images for e in ('png', 'npy')}
  for path in images.values():
    if os.path.realpath(path) in outputs:
      raise UserError(f'--output={output} would overwrite the input {path}; choose another folder')
  run = trained_run.load(workdir)
  if not 0 <= overlap < run.image_size:
    raise UserError(f'--overlap={overlap} must be in [0, {run.image_size}), below the tile size '
                    f'{run.image_size} of the run')
  for stem, path in images.items():  # every input checked before anything is written
    image = _read_checked(path, run)
    if stem in mask_paths:
      read_mask(mask_paths[stem], path, image.shape[:2], run.num_classes)
  os.makedirs(output, exist_ok=True)
  per_image, total = {}, np.zeros((run.num_classes,) * 2, np.int64)
  for stem, path in tqdm(images.items(), desc='images', unit='image', file=sys.stderr):
    class_map, probs = predict_image(run, _read_checked(path, run), overlap)
    _save_png(os.path.join(output, f'{stem}.png'), class_map, raw)
    if probabilities:
      files.write_atomic(os.path.join(output, f'{stem}.npy'), lambda f, p=probs: np.save(f, p))
    if stem in mask_paths:
      mask = read_mask(mask_paths[stem], path, class_map.shape, run.num_classes)
      confusion = np.asarray(metrics.confusion_matrix(mask, class_map, run.num_classes), np.int64)
      per_image[stem] = metrics.summarize(confusion, run.class_names)
      total += confusion
  if not mask_paths:
    return {}
  overall = metrics.summarize(total, run.class_names)
  overall['confusion_matrix'] = total.tolist()
  report = {'class_names': list(run.class_names), 'overlap': overlap, 'overall': overall,
            'images': per_image}
  files.write_json_atomic(os.path.join(output, IOU_FILE), report)
  return report


FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    report = predict_files(FLAGS.workdir, FLAGS.input, FLAGS.output, FLAGS.overlap, FLAGS.raw,
                           FLAGS.probabilities, FLAGS.masks or '')
  print(f'masks: {FLAGS.output}')
  if report:
    miou = report['overall']['miou']
    print(f'mIoU over all images: {"n/a" if miou is None else f"{100 * miou:.2f} %"} '
          f'({os.path.join(FLAGS.output, IOU_FILE)})')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Run folder of python -m frem_jax.train (its best checkpoint is used).')
  flags.DEFINE_string('input', None, 'A PNG/TIFF image or a folder of them, any size.')
  flags.DEFINE_string('output', None, 'Folder for <stem>.png (and .npy, iou.json); created if needed.')
  flags.DEFINE_integer('overlap', 32, 'Pixels shared by neighbouring tiles, in [0, tile size).')
  flags.DEFINE_bool('raw', False, 'Write class indices as 8-bit grayscale PNGs instead of palette PNGs.')
  flags.DEFINE_bool('probabilities', False, 'Also write <stem>.npy: softmax float32 [H, W, K].')
  flags.DEFINE_string('masks', None, 'A label map (class indices 0..K-1) or a folder of them with '
                      'the images\' stems: also write iou.json.')
  for name in ('workdir', 'input', 'output'):
    flags.mark_flag_as_required(name)
  app.run(main, flags_parser=cli.parse_flags)
