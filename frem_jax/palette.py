"""The colours of the classes: predict's palette PNGs and the report's panels show class k alike."""

import numpy as np

# Colours of classes 0..9 (class 0, usually background, is black).
PALETTE = (
    ('black', (0, 0, 0)), ('red', (255, 0, 0)), ('green', (0, 255, 0)), ('blue', (0, 0, 255)),
    ('yellow', (255, 255, 0)), ('magenta', (255, 0, 255)), ('cyan', (0, 255, 255)),
    ('orange', (255, 128, 0)), ('purple', (128, 0, 255)), ('white', (255, 255, 255)),
)
# One RGB colour per class index (class 0 first).
CLASS_COLOURS = [rgb for _, rgb in PALETTE]


def palette() -> list[int]:
  """The 256-entry palette as a flat RGB list: PALETTE, then fixed pseudo-random colours (seed 0)."""
  extra = np.random.default_rng(0).integers(0, 256, (256 - len(PALETTE), 3))
  return [c for _, rgb in PALETTE for c in rgb] + extra.ravel().tolist()
