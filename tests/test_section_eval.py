"""Whole-section evaluation: sections reassembled from tiles, incomplete ones left out, IoU over whole pixels."""

import numpy as np

from frem_jax import input_pipeline
from frem_jax import metrics
from frem_jax import section_eval


def tiled_split(sections, drop_from_last=0, tile=256):
  """A split of 1024² sections cut into 16 tiles each, as the Drosophila builder orders them."""
  images, masks, sources, tiles = [], [], [], []
  for s, (image, mask) in sections.items():
    for t in range(16):
      y, x = (t // 4) * tile, (t % 4) * tile
      images.append(image[y:y + tile, x:x + tile])
      masks.append(mask[y:y + tile, x:x + tile])
      sources.append(s)
      tiles.append(t)
  n = len(images) - drop_from_last
  return input_pipeline.Split(np.stack(images)[:n], np.stack(masks)[:n], np.asarray(sources[:n]),
                              np.asarray(tiles[:n]))


def threshold_logits(batch):
  """A 'model' whose prediction is a pointwise function of the image: class = intensity bucket."""
  classes = np.clip((batch[..., 0] * 3).astype(int), 0, 2)
  return np.eye(3, dtype=np.float32)[classes] * 5.0


def window_logits(t):
  """Logits [2t, 2(1 - t), 1.2] of a window of mean intensity t: class 1 below 0.4, 2 up to 0.6, 0 above."""
  return np.stack([2 * t, 2 * (1 - t), np.full_like(t, 1.2)], -1)


def window_mean_model(batch):
  """A 'model' that gives each window one prediction from its mean: windows differ where they overlap."""
  logits = window_logits(batch[..., 0].astype(np.float64).mean(axis=(1, 2)))
  return np.broadcast_to(logits[:, None, None, :], batch.shape[:3] + (3,)).astype(np.float32)


# 256² windows at a stride of 192 (overlap 64) on a 1024² section: their starts, and the pieces of
# an axis with the windows covering each (1 or 2).
STARTS = (0, 192, 384, 576, 768)
PIECES = [((0, 192), (0,)), ((192, 256), (0, 192)), ((256, 384), (192,)), ((384, 448), (192, 384)),
          ((448, 576), (384,)), ((576, 640), (384, 576)), ((640, 768), (576,)), ((768, 832), (576, 768)),
          ((832, 1024), (768,))]


def hand_averaged_classes(image):
  """Each piece's class from the mean of its windows' logits."""
  t = {(y, x): image[y:y + 256, x:x + 256, 0].astype(np.float64).mean() for y in STARTS for x in STARTS}
  classes = np.zeros(image.shape[:2], np.int64)
  for (y0, y1), ys in PIECES:
    for (x0, x1), xs in PIECES:
      logits = np.mean([window_logits(np.float64(t[y, x])) for y in ys for x in xs], axis=0)
      top = np.sort(logits)
      assert top[-1] - top[-2] > 1e-3  # no near tie: float32 rounding cannot flip it
      classes[y0:y1, x0:x1] = np.argmax(logits)
  return classes


def test_full_sections_are_scored_as_wholes_and_incomplete_ones_are_left_out():
  rng = np.random.default_rng(0)
  # A wave of period 2 strides: window means alternate about 0.36 (class 1) and 0.64 (class 0);
  # where two windows overlap their mean logits give class 2, which neither window gives alone.
  wave = 0.45 + 0.4 * np.sin(2 * np.pi * np.arange(1024) / 384)
  sections = {16: (wave[None, :, None].astype(np.float32) + 0.1 * rng.random((1024, 1024, 1), np.float32),
                   rng.integers(0, 3, (1024, 1024))),
              17: (rng.random((1024, 1024, 1), np.float32), rng.integers(0, 3, (1024, 1024)))}
  split = tiled_split(sections, drop_from_last=3)  # section 17 lacks 3 tiles
  result = section_eval.evaluate_full_sections(window_mean_model, split, 256, 64, ['a', 'b', 'c'])
  image, mask = sections[16]
  predicted = hand_averaged_classes(image)
  # Where windows overlap, their mean differs from any one window's (the last written, say).
  last_written = np.zeros_like(predicted)
  for y in STARTS:
    for x in STARTS:
      last_written[y:y + 256, x:x + 256] = np.argmax(window_logits(image[y:y + 256, x:x + 256, 0].mean()))
  assert np.mean(predicted != last_written) > 0.2 and np.mean(predicted == 2) > 0.2
  confusion = np.zeros((3, 3), np.int64)
  np.add.at(confusion, (mask.ravel(), predicted.ravel()), 1)
  expected = metrics.summarize(confusion, ['a', 'b', 'c'])
  assert result['sections'] == [16] and result['overlap'] == 64
  assert result['miou'] == expected['miou']
  assert result['iou_per_class'] == expected['iou_per_class']


def test_no_complete_section_gives_none():
  rng = np.random.default_rng(1)
  split = tiled_split({16: (rng.random((1024, 1024, 1), np.float32), rng.integers(0, 3, (1024, 1024)))},
                      drop_from_last=1)
  assert section_eval.evaluate_full_sections(threshold_logits, split, 256, 0, ['a', 'b', 'c']) is None
