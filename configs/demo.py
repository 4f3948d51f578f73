"""Demo: FREM on the embedded synthetic cell images at 64², narrow widths, a few minutes on a CPU."""

from configs import default


def get_config():
  """Small, fast variant of the defaults for a first run on any machine."""
  config = default.get_config()
  config.num_epochs = 40
  config.batch_size = 8
  config.eval_batch_size = 16
  config.dataset.image_size = 64
  config.dataset.num_train = 96
  config.dataset.num_validation = 16
  config.dataset.num_test = 32
  config.model.features = (8, 16, 32, 64, 128)
  config.model.renorm_warmup_steps = 200
  config.frem.num_selected = 40  # B scaled with the width: 162/512 of the channels
  config.frem.factor = 632.0
  return config
