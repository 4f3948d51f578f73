"""Whole-image evaluation of a Drosophila run: the test sections segmented as wholes, not as tiles."""

from typing import Callable, Optional, Sequence

import numpy as np

from frem_jax import input_pipeline
from frem_jax import metrics
from frem_jax import sliding_window
from frem_jax.datasets import drosophila_vnc


def evaluate_full_sections(logits_fn: Callable[[np.ndarray], np.ndarray], split: input_pipeline.Split,
                           tile_size: int, overlap: int, class_names: Sequence[str]) -> Optional[dict]:
  """IoU over the split's whole sections, each segmented with overlapping tiles (sliding_window).

  Only sections whose tiles are all in the split count (`dataset.limit` can
  cut one short); None if there is none. The confusion matrix is summed over
  all pixels of those sections.

  Returns:
    metrics.summarize(...) plus 'sections' (their ids) and 'overlap'.
  """
  images, masks, sections = drosophila_vnc.full_sections(split, tile_size)
  per_section = (drosophila_vnc.SECTION_SIZE // tile_size) ** 2
  complete = [k for k, s in enumerate(sections) if np.sum(split.sources == s) == per_section]
  if not complete:
    return None
  k_classes = len(class_names)
  confusion = np.zeros((k_classes, k_classes), np.int64)
  for k in complete:
    logits = sliding_window.predict_logits(logits_fn, images[k], tile_size, overlap)
    predicted = np.argmax(logits, axis=-1)
    confusion += np.asarray(metrics.confusion_matrix(masks[k], predicted, k_classes), np.int64)
  summary = metrics.summarize(confusion, class_names)
  summary.update(sections=[int(sections[k]) for k in complete], overlap=int(overlap))
  return summary
