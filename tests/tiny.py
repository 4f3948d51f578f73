"""A tiny config for fast end-to-end tests."""

import tempfile

from configs import default


def tiny_config(**overrides):
  """Demo-like config at 32², widths (4, 8, 16), a few images and epochs."""
  config = default.get_config()
  config.num_epochs = 3
  config.batch_size = 4
  config.eval_batch_size = 8
  config.dataset.image_size = 32
  config.dataset.num_train = 8
  config.dataset.num_validation = 4
  config.dataset.num_test = 4
  config.model.features = (4, 8, 16)
  config.model.renorm_warmup_steps = 4
  config.frem.num_selected = 5
  config.frem.factor = 20.0
  config.dataset.data_dir = DATA_DIR
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return config

# Prepared TFDS data shared by the tests of one session (each options set is prepared once).
DATA_DIR = tempfile.mkdtemp(prefix='frem_tfds_')
