"""The picture a microscopist looks at first: the input image with its predicted classes tinted on it."""

import numpy as np

# How much of a pixel's colour is its class colour (the rest is the image): the cells stay visible.
ALPHA = 0.4


def display_rgb(image: np.ndarray) -> np.ndarray:
  """An image [H, W, C] (any intensities, C = 1 or 3) as uint8 RGB [H, W, 3], stretched min..max to 0..255.

  The stretch is over all channels at once (RGB keeps its hues); a constant image is black.
  """
  image = np.asarray(image, np.float64)
  lo, hi = image.min(), image.max()
  scaled = (image - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(image)
  if scaled.shape[-1] == 1:
    scaled = np.repeat(scaled, 3, axis=-1)
  return np.round(scaled).astype(np.uint8)


def overlay(image: np.ndarray, class_map: np.ndarray, colours: np.ndarray,
            alpha: float = ALPHA) -> np.ndarray:
  """uint8 RGB [H, W, 3]: `display_rgb(image)`, where class k > 0 is mixed with colours[k] by `alpha`.

  Class 0 (background) is left untinted.

  Args:
    image: the input image [H, W, C] as read.
    class_map: the predicted class indices [H, W].
    colours: RGB of each class [>= K, 3] (predict's palette).
    alpha: the weight of the class colour.
  """
  rgb = display_rgb(image).astype(np.float64)
  colours = np.asarray(colours, np.float64)
  tinted = (1 - alpha) * rgb + alpha * colours[class_map]
  out = np.where((class_map > 0)[..., None], tinted, rgb)
  return np.round(out).astype(np.uint8)
