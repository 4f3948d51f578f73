"""A tiny config for fast end-to-end tests."""

import tempfile

from configs import default


# Two stages: most of the suite's time is XLA compiling, and a train step's compile time grows with
# the number of stages, not their widths (on a 2-core AMD EPYC Zen 3, 2026-12-07: the tiny train step
# compiled in 4.2-4.4 s at (8, 16) against 5.1-6.5 s at (4, 8, 16); its initialiser 3.3-4.0 against
# 5.1-6.1 s). Every line of the U-Net still runs: a stage with a skip, the deepest stage with FREM
# and SuperVision's head, an up-convolution and a decoder stage.
FEATURES = (8, 16)
# Widths in multiples of 16: the CPU wing's kernels then run every convolution of the model.
KERNEL_FEATURES = (16, 32)


def tiny_config(**overrides):
  """Demo-like config at 32², widths FEATURES, a few images and epochs."""
  config = default.get_config()
  config.num_epochs = 3
  config.batch_size = 4
  config.eval_batch_size = 8
  config.dataset.image_size = 32
  config.dataset.num_train = 8
  config.dataset.num_validation = 4
  config.dataset.num_test = 4
  config.model.features = FEATURES
  config.model.renorm_warmup_steps = 4
  config.frem.num_selected = 5
  config.frem.factor = 20.0
  config.dataset.data_dir = DATA_DIR
  return override(config, overrides)


def override(config, overrides):
  """Sets each dotted key of `overrides` ('frem.factor': 5.0) in `config`; returns `config`."""
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return config

# Prepared TFDS data shared by the tests of one session (each options set is prepared once).
DATA_DIR = tempfile.mkdtemp(prefix='frem_tfds_')
