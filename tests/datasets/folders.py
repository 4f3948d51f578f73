"""Stand-in dataset folders written by the tests, in the documented layouts."""

import os

import numpy as np
from PIL import Image

from frem_jax.datasets import synthetic


def write_folder(root, n, size=(64, 64), image_dir='images', mask_dir='masks', values=(0, 1, 2),
                 mode='png8', seed=0):
  """n image/mask pairs built from synthetic cells; mask class k is written as values[k]."""
  os.makedirs(os.path.join(root, image_dir), exist_ok=True)
  os.makedirs(os.path.join(root, mask_dir), exist_ok=True)
  h, w = size
  for i in range(n):
    image, mask = synthetic.make_example(np.random.default_rng([seed, i]), max(h, w))
    image, mask = image[:h, :w, 0], mask[:h, :w]
    name = f'img{i:03d}'
    if mode == 'tif16':
      Image.fromarray((image * 65535).astype(np.uint16)).save(os.path.join(root, image_dir, name + '.tif'))
    elif mode == 'rgb':
      rgb = (np.stack([image, image * 0.5, image * 0.2], -1) * 255).astype(np.uint8)
      Image.fromarray(rgb).save(os.path.join(root, image_dir, name + '.png'))
    else:
      Image.fromarray((image * 255).astype(np.uint8)).save(os.path.join(root, image_dir, name + '.png'))
    Image.fromarray(np.asarray(values, np.uint8)[mask]).save(os.path.join(root, mask_dir, name + '.png'))
  return root
