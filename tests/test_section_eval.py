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


def test_full_sections_are_scored_as_wholes_and_incomplete_ones_are_left_out():
  rng = np.random.default_rng(0)
  sections = {16: (rng.random((1024, 1024, 1), np.float32), rng.integers(0, 3, (1024, 1024))),
              17: (rng.random((1024, 1024, 1), np.float32), rng.integers(0, 3, (1024, 1024)))}
  split = tiled_split(sections, drop_from_last=3)  # section 17 lacks 3 tiles
  result = section_eval.evaluate_full_sections(threshold_logits, split, 256, 64, ['a', 'b', 'c'])
  image, mask = sections[16]
  predicted = np.clip((image[..., 0] * 3).astype(int), 0, 2)
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
