"""Confusion matrices and IoU against hand-computed values."""

import jax.numpy as jnp
import numpy as np

from frem_jax import metrics


def test_confusion_matrix_by_hand():
  labels = jnp.array([[0, 0, 1, 1], [2, 2, 2, 0]])
  preds = jnp.array([[0, 1, 1, 1], [2, 0, 2, 0]])
  expected = np.array([[2, 1, 0],
                       [0, 2, 0],
                       [1, 0, 2]])
  np.testing.assert_array_equal(np.asarray(metrics.confusion_matrix(labels, preds, 3)), expected)


def test_confusion_matrix_ignores_zero_weight_pixels():
  labels = jnp.array([0, 1, 1, 2])
  preds = jnp.array([0, 1, 0, 2])
  weights = jnp.array([1, 1, 0, 0])
  np.testing.assert_array_equal(np.asarray(metrics.confusion_matrix(labels, preds, 3, weights)),
                                [[1, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_iou_and_miou_by_hand():
  confusion = np.array([[2, 1, 0],
                        [0, 2, 0],
                        [1, 0, 2]])
  # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: TP 2, FP 0, FN 1 -> 2/3
  ious = metrics.iou_per_class(confusion)
  np.testing.assert_allclose(ious, [0.5, 2 / 3, 2 / 3])
  assert np.isclose(metrics.mean_iou(ious), (0.5 + 2 / 3 + 2 / 3) / 3)


def test_absent_class_is_null_and_left_out_of_the_mean():
  confusion = np.array([[3, 1, 0],
                        [1, 5, 0],
                        [0, 0, 0]])
  summary = metrics.summarize(confusion, ('background', 'membrane', 'nucleus'))
  assert summary['iou_per_class'] == {'background': 0.6, 'membrane': 5 / 7, 'nucleus': None}
  assert np.isclose(summary['miou'], (0.6 + 5 / 7) / 2)
  assert np.isclose(summary['pixel_accuracy'], 0.8)


def test_class_predicted_but_absent_from_truth_has_iou_zero():
  confusion = np.array([[3, 1], [0, 0]])
  assert metrics.iou_per_class(confusion) == [0.75, 0.0]
