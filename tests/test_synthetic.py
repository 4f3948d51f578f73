"""The embedded synthetic cell images: deterministic, three learnable classes."""

import numpy as np
import pytest

from frem_jax.datasets import synthetic
from frem_jax.errors import UserError


def test_same_seed_same_images_other_seed_other_images():
  a = synthetic.make_split(0, 'train', 3, 32)
  b = synthetic.make_split(0, 'train', 3, 32)
  c = synthetic.make_split(1, 'train', 3, 32)
  assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


def test_an_example_does_not_depend_on_the_split_size():
  small = synthetic.make_split(0, 'test', 2, 32)
  large = synthetic.make_split(0, 'test', 5, 32)
  assert np.array_equal(small[0], large[0][:2])


def test_splits_differ():
  assert not np.array_equal(synthetic.make_split(0, 'train', 1, 32)[0],
                            synthetic.make_split(0, 'validation', 1, 32)[0])


def test_shapes_ranges_and_class_shares():
  images, masks = synthetic.make_split(0, 'train', 20, 64)
  assert images.shape == (20, 64, 64, 1) and images.dtype == np.float32
  assert masks.shape == (20, 64, 64) and masks.dtype == np.uint8
  assert images.min() >= 0 and images.max() <= 1
  shares = np.bincount(masks.ravel(), minlength=3) / masks.size
  assert 0.4 < shares[0] < 0.75 and 0.15 < shares[1] < 0.4 and 0.05 < shares[2] < 0.25


def test_membrane_and_nucleus_are_brighter_than_background():
  images, masks = synthetic.make_split(0, 'train', 10, 64)
  mean = [images[..., 0][masks == c].mean() for c in range(3)]
  assert mean[1] > mean[2] > mean[0] + 0.05


@pytest.mark.parametrize('args,message', [
    ((0, 'val', 1, 32), "unknown split 'val'"),
    ((0, 'train', 1, 8), 'dataset.image_size=8 is too small'),
    ((0, 'train', 0, 32), 'needs at least 1 image, got 0'),
])
def test_bad_arguments(args, message):
  with pytest.raises(UserError, match=message):
    synthetic.make_split(*args)
