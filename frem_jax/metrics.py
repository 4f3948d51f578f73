"""Segmentation metrics: confusion matrices on the device, IoU on the host."""

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels: jnp.ndarray, predictions: jnp.ndarray, num_classes: int,
                     weights: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """Counts of (true class, predicted class) pairs: [K, K] int32, rows are the truth.

  `weights` (same shape as labels, 0 or 1) leaves out padded pixels.
  """
  index = labels.astype(jnp.int32) * num_classes + predictions.astype(jnp.int32)
  w = None if weights is None else weights.astype(jnp.int32).ravel()
  counts = jnp.bincount(index.ravel(), weights=w, length=num_classes * num_classes)
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> list[Optional[float]]:
  """IoU = TP / (TP + FP + FN) for each class; None for a class absent from truth and prediction."""
  confusion = np.asarray(confusion, np.int64)
  tp = np.diag(confusion)
  union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
  return [None if u == 0 else float(t / u) for t, u in zip(tp, union)]


def mean_iou(ious: Sequence[Optional[float]]) -> Optional[float]:
  """Mean over the classes whose IoU is defined; None if none is."""
  defined = [v for v in ious if v is not None]
  return float(np.mean(defined)) if defined else None


def summarize(confusion: np.ndarray, class_names: Sequence[str]) -> dict:
  """{'miou': …, 'iou_per_class': {name: IoU or None}, 'pixel_accuracy': …} of a whole split."""
  confusion = np.asarray(confusion, np.int64)
  ious = iou_per_class(confusion)
  total = confusion.sum()
  return {
      'miou': mean_iou(ious),
      'iou_per_class': dict(zip(class_names, ious)),
      'pixel_accuracy': float(np.trace(confusion) / total) if total else None,
  }
