"""Your own images: a folder with images/ and masks/ of matching names (docs/datasets.md).

  python -m frem_jax.train --config=configs/folder_example.py --workdir=runs/mine \
      --config.dataset.source_dir=/path/to/folder \
      --config.dataset.classes="((0, 'background'), (255, 'membrane'))"
"""

from configs import default


def get_config():
  """U-Net+SE with FREM on a user's folder, tiles of 256², split 70/10/20 by image."""
  config = default.get_config()
  config.dataset.name = 'cell_folder'
  config.dataset.image_size = 256
  config.dataset.classes = ((0, 'background'), (255, 'membrane'))
  config.dataset.split_fractions = (0.7, 0.1, 0.2)
  config.dataset.split_seed = 0
  config.num_epochs = 200
  return config
