"""Synthetic fluorescence images of packed liver cells, generated from a seed.

They stand in for the paper's transgenic mouse liver images (a fluorescent
marker on the cell membrane and the nucleus, blurred, dim and noisy): cells are
a jittered Voronoi tessellation, some regions are empty gaps (sinusoids), and
each cell has an elliptical nucleus (a few lack one). Classes: background 0,
membrane 1, nucleus 2.
"""

import numpy as np

from frem_jax.errors import UserError

CLASS_NAMES = ('background', 'membrane', 'nucleus')
SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur with reflected borders."""
  radius = max(1, int(3 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps /= taps.sum()
  padded = np.pad(image, radius, mode='reflect')
  rows = sum(w * padded[i:i + image.shape[0], :] for i, w in enumerate(taps))
  return sum(w * rows[:, i:i + image.shape[1]] for i, w in enumerate(taps))


def make_example(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One synthetic image [H, W, 1] float32 in [0, 1] and its mask [H, W] uint8 in {0, 1, 2}."""
  size = image_size
  scale = size / 64.0
  spacing = size / rng.uniform(4.0, 5.5)
  # Jittered grid of cell centres covering the image and a margin around it.
  grid = np.arange(-spacing, size + spacing, spacing)
  cy, cx = np.meshgrid(grid, grid, indexing='ij')
  centres = np.stack([cy.ravel(), cx.ravel()], 1) + rng.uniform(-0.35, 0.35, (cy.size, 2)) * spacing
  n = len(centres)
  empty = rng.random(n) < 0.12
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  dist = np.hypot(yy[..., None] - centres[:, 0], xx[..., None] - centres[:, 1])
  nearest2 = np.argpartition(dist, 1, axis=-1)[..., :2]
  d = np.take_along_axis(dist, nearest2, -1)
  order = np.argsort(d, axis=-1)
  owner = np.take_along_axis(nearest2, order[..., :1], -1)[..., 0]
  other = np.take_along_axis(nearest2, order[..., 1:], -1)[..., 0]
  d1, d2 = np.sort(d, axis=-1)[..., 0], np.sort(d, axis=-1)[..., 1]
  gap = (d2 - d1) / 2  # about the distance to the boundary between the two nearest cells
  thickness = rng.uniform(0.8, 1.3) * scale
  membrane = (gap < thickness) & ~(empty[owner] & empty[other])

  # Elliptical nuclei near the centres.
  axes = spacing * rng.uniform(0.17, 0.27, (n, 2))
  angle = rng.uniform(0, np.pi, n)
  offset = rng.normal(0, 0.06 * spacing, (n, 2))
  has_nucleus = ~empty & (rng.random(n) > 0.08)
  dy = yy - (centres[owner, 0] + offset[owner, 0])
  dx = xx - (centres[owner, 1] + offset[owner, 1])
  c, s = np.cos(angle[owner]), np.sin(angle[owner])
  u, v = (c * dx + s * dy) / axes[owner, 0], (-s * dx + c * dy) / axes[owner, 1]
  nucleus = has_nucleus[owner] & (u * u + v * v < 1.0) & ~membrane

  mask = np.zeros((size, size), np.uint8)
  mask[nucleus] = 2
  mask[membrane] = 1

  # Fluorescence: bright membranes and nuclei, faint cytoplasm, then optics and a dim, noisy camera.
  signal = np.where(empty[owner], 0.0, rng.uniform(0.12, 0.22)).astype(np.float32)
  signal = signal + membrane * rng.uniform(0.7, 1.0) + nucleus * rng.uniform(0.45, 0.7)
  texture = _blur(rng.normal(0, 1, (size, size)), 2.0 * scale)
  signal = signal * (1.0 + 0.25 * texture / (texture.std() + 1e-6))
  signal = _blur(np.clip(signal, 0, None), rng.uniform(0.7, 1.1) * scale)
  gy, gx = rng.normal(0, 0.25, 2)
  illumination = 1.0 + gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
  brightness = rng.uniform(0.25, 0.4)  # low illuminance
  photons = rng.uniform(40, 80)
  expected = np.clip(signal * illumination * brightness, 0, None)
  image = rng.poisson(expected * photons) / photons + rng.normal(0, 0.015, expected.shape) + 0.03
  return np.clip(image, 0, 1).astype(np.float32)[..., None], mask


def make_split(seed: int, split: str, num_images: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`num_images` examples of one split: images [N, H, W, 1] float32, masks [N, H, W] uint8.

  Example i of a split depends only on (seed, split, i), not on other splits' sizes.
  """
  if split not in SPLIT_IDS:
    raise UserError(f'unknown split {split!r} of the synthetic dataset; use one of {tuple(SPLIT_IDS)}')
  if image_size < 16:
    raise UserError(f'dataset.image_size={image_size} is too small for synthetic cells; use >= 16')
  if num_images < 1:
    raise UserError(f'the synthetic {split} split needs at least 1 image, got {num_images}')
  examples = [make_example(np.random.default_rng(np.random.SeedSequence([seed, SPLIT_IDS[split], i])),
                           image_size) for i in range(num_images)]
  return np.stack([e[0] for e in examples]), np.stack([e[1] for e in examples])
