"""Segmenting images of any size with the best checkpoint of a trained run.

Usage (predict/__main__.py):
  python -m frem_jax.predict --workdir=runs/demo --input=IMAGE_OR_FOLDER --output=OUT
      [--overlap=TILE//8] [--raw] [--probabilities] [--overlay] [--masks=MASK_OR_FOLDER]
      [--half_precision=true|false]
  python -m frem_jax.predict --workdir=RUN --source_dir=FOLDER --output=OUT   (score a folder)

Writes OUT/<stem>.png per image: a palette PNG whose pixel values are the class
indices and whose palette is palette.PALETTE (with --raw: an 8-bit grayscale PNG of the
class indices); with --probabilities also OUT/<stem>.npy, the softmax float32
[H, W, K]; with --overlay also OUT/<stem>_overlay.png, the input tinted by class;
with --masks (same stems; read as in training, see predict/masks.py) or --source_dir
(a folder laid out like the training data, see predict/source_layout.py) also
OUT/iou.json with the IoU per image and over all images. docs/predict.md has it all.
"""

import os
import sys
from typing import Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from frem_jax import files
from frem_jax import metrics
from frem_jax import palette
from frem_jax import sliding_window
from frem_jax import trained_run
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.datasets import image_io
from frem_jax.errors import UserError
from frem_jax.filenames import IOU_FILE
from frem_jax.predict import DEFAULT_OVERLAP_DIVISOR
from frem_jax.predict import masks as run_masks
from frem_jax.predict import overlay as overlay_lib
from frem_jax.predict import source_layout


def default_overlap(tile: int) -> int:
  """The overlap used when none is given: tile // DEFAULT_OVERLAP_DIVISOR (32 for 256² tiles, 4 for 32²)."""
  return tile // DEFAULT_OVERLAP_DIVISOR


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


def find_masks(path: str, images: dict, input_path: str = '') -> dict:
  """Stem -> path of the label map of each image: `path` is a folder of same stems, or one file.

  With a folder of images (`input_path`), every mask must have its image too.
  """
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
      raise UserError(f'{image} has no mask in --masks={path}; add {stem}.png (with the same '
                      'values as the training masks) or leave out --masks')
  if os.path.isdir(input_path):
    for stem, mask in found.items():
      if stem not in images:
        raise UserError(f'mask {mask} has no image in --input={input_path}; add {stem}.png there '
                        'or remove the mask')
  return {stem: found[stem] for stem in images}


def read_mask(mask: run_masks.Mask, image_path: str, shape: tuple) -> np.ndarray:
  """The stored values int64 [H, W] of a mask, checked to be the size of its image."""
  values = mask.read()
  if values.shape != tuple(shape):
    raise UserError(f'mask {mask.name} is {values.shape[0]}x{values.shape[1]} but its image '
                    f'{image_path} is {shape[0]}x{shape[1]}; the mask must match its image')
  return values


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


def _save_overlay(path: str, image: np.ndarray, class_map: np.ndarray) -> None:
  colours = np.asarray(palette.palette(), np.uint8).reshape(-1, 3)
  im = Image.fromarray(overlay_lib.overlay(image, class_map, colours))
  files.write_atomic(path, lambda f: im.save(f, format='PNG'))


@workdir_lock.holding('output', '--output')
def predict_files(workdir: str, input_path: str, output: str, overlap: Optional[int] = None, raw: bool = False,
                  probabilities: bool = False, masks: str = '', overlay: bool = False,
                  source_dir: str = '', half_precision: Optional[bool] = None) -> dict:
  """Segments the image(s) at `input_path` (or of `source_dir`) into `output`.

  `half_precision` (True/False) computes in half precision (`build.build_model`) or float32 whatever the run
  trained in; None: the run's own `half_precision`.
  `overlap` None means `default_overlap` of the run's tile size.

  Returns:
    The iou.json content ({} without masks).
  """
  workdir_lib.check_not_a_file(output, '--output')
  run = None
  if source_dir:
    if input_path or masks:
      raise UserError('--source_dir takes the images and masks from a folder laid out like the '
                      'training data; leave out --input and --masks')
    run = trained_run.load(workdir, half_precision)
    images, mask_files = source_layout.image_mask_pairs(run.config, source_dir)
  else:
    if not input_path:
      raise UserError('give --input (an image or a folder of them) or --source_dir (a folder laid '
                      'out like the training data)')
    images = find_inputs(input_path)
    mask_files = ({stem: run_masks.mask_file(p) for stem, p in find_masks(masks, images, input_path).items()}
                  if masks else {})
  names = [f'{s}.{e}' for s in images for e in ('png', 'npy')] + [f'{s}_overlay.png' for s in images]
  outputs = {os.path.realpath(os.path.join(output, name)) for name in names}
  for path in images.values():
    if os.path.realpath(path) in outputs:
      raise UserError(f'--output={output} would overwrite the input {path}; choose another folder')
  run = run or trained_run.load(workdir, half_precision)
  if overlap is None:
    overlap = default_overlap(run.image_size)
  if not 0 <= overlap < run.image_size:
    raise UserError(f'--overlap={overlap} must be in [0, {run.image_size}), below the tile size '
                    f'{run.image_size} of the run')
  values = {}
  for stem, path in images.items():  # every input checked before anything is written
    image = _read_checked(path, run)
    if stem in mask_files:
      values[mask_files[stem].name] = np.unique(read_mask(mask_files[stem], path, image.shape[:2]))
  mask_format = run_masks.choose_format(values, run.config, run.num_classes) if mask_files else None
  os.makedirs(output, exist_ok=True)
  per_image, total = {}, np.zeros((run.num_classes,) * 2, np.int64)
  for stem, path in tqdm(images.items(), desc='images', unit='image', file=sys.stderr):
    image = _read_checked(path, run)
    class_map, probs = predict_image(run, image, overlap)
    _save_png(os.path.join(output, f'{stem}.png'), class_map, raw)
    if overlay:
      _save_overlay(os.path.join(output, f'{stem}_overlay.png'), image, class_map)
    if probabilities:
      files.write_atomic(os.path.join(output, f'{stem}.npy'), lambda f, p=probs: np.save(f, p))
    if stem in mask_files:
      mask = run_masks.to_classes(read_mask(mask_files[stem], path, class_map.shape), mask_format,
                                  mask_files[stem].name)
      confusion = np.asarray(metrics.confusion_matrix(mask, class_map, run.num_classes), np.int64)
      per_image[stem] = metrics.summarize(confusion, run.class_names)
      total += confusion
  if not mask_files:
    return {}
  overall = metrics.summarize(total, run.class_names)
  overall['confusion_matrix'] = total.tolist()
  report = {'class_names': list(run.class_names), 'overlap': overlap,
            'masks': run_masks.describe(mask_format, run.class_names), 'overall': overall,
            'images': per_image}
  files.write_json_atomic(os.path.join(output, IOU_FILE), report)
  return report
