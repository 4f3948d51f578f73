"""A folder laid out like a run's training data, as the images and masks to score the run on.

`cell_folder`: SOURCE/images/ and SOURCE/masks/ of matching stems; `mouse_liver`:
SOURCE/images/ and SOURCE/labels/ (both as in training, every file paired);
`drosophila_vnc`: the published layout, SOURCE/stack1/raw/NN.tif with
SOURCE/stack1/{membranes,mitochondria,synapses}/NN.png for all 20 sections,
labelled by the dataset's own rules (`drosophila_vnc.read_section`).
"""

import os

import ml_collections
import numpy as np

from frem_jax.datasets.names import FOLDER_NAMES
from frem_jax.predict import masks as run_masks
from frem_jax.errors import UserError


def image_mask_pairs(config: ml_collections.ConfigDict, source_dir: str) -> tuple[dict, dict]:
  """Stem -> image path and stem -> `run_masks.Mask` of every image of `source_dir`."""
  # pylint: disable=g-import-not-at-top  (tensorflow_datasets loads only for the folder datasets)
  name = config.dataset.name
  if not os.path.isdir(source_dir):
    raise UserError(f'--source_dir={source_dir} is not a folder; give a folder laid out like the '
                    f'training data of the run ({name})')
  if name in FOLDER_NAMES:
    from frem_jax.datasets.cell_folder import CellFolder, MouseLiver
    images, masks = (MouseLiver if name == 'mouse_liver' else CellFolder).pairs(source_dir)
    return images, {stem: run_masks.mask_file(path) for stem, path in masks.items()}
  if name == 'drosophila_vnc':
    from frem_jax.datasets import drosophila_vnc as dv
    dv.check_source(source_dir)
    stack = os.path.join(source_dir, 'stack1')
    images, masks = {}, {}
    for section in sorted(s for split in dv.SECTIONS.values() for s in split):
      stem = f'{section:02d}'
      images[stem] = os.path.join(stack, 'raw', f'{stem}.tif')
      masks[stem] = run_masks.Mask(
          os.path.join(stack, '{membranes,mitochondria,synapses}', f'{stem}.png'),
          lambda s=section: dv.read_section(source_dir, s)[1].astype(np.int64))
    return images, masks
  raise UserError(f'--source_dir: the run was trained on {name}, which has no source folder; '
                  'give --input (and --masks) instead')
