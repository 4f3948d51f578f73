"""The paper's defaults: U-Net+SE with FREM, batch renormalisation, Adam, 2000 epochs.

Every experiment config starts from `get_config()` here and overrides keys;
the README documents each key. The returned config is locked: assigning a key
that does not exist here is an error, so a typo never passes silently.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default configuration (see the README's table of config keys)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_epochs = 2000
  config.batch_size = 4
  config.eval_batch_size = 8
  config.learning_rate = 1e-3
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1
  config.parallelism = 'jit'  # 'jit' (a Mesh over the devices) or 'pmap'
  config.num_devices = 0  # local devices to use; 0 = all
  config.data_on_device = True  # keep the training split on the device, one jitted scan per epoch

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'synthetic_cells'
  config.dataset.image_size = 256
  config.dataset.num_train = 35
  config.dataset.num_validation = 5
  config.dataset.num_test = 10
  config.dataset.seed = 0
  config.dataset.source_dir = ''  # the real datasets' source folder (README, Datasets)
  config.dataset.data_dir = ''  # prepared data; '' = tensorflow_datasets/ beside the workdir
  config.dataset.classes = ()  # mask value -> class name pairs, e.g. ((0, 'background'), (255, 'membrane'))
  config.dataset.split_fractions = (0.7, 0.1, 0.2)  # train, validation, test (folder datasets)
  config.dataset.split_seed = 0
  config.dataset.limit = 0  # keep the first N tiles of each split (0 = all), for quick runs
  config.dataset.augment = False  # random flips and 90° rotations (the paper mentions none)

  config.model = ml_collections.ConfigDict()
  config.model.features = (32, 64, 128, 256, 512)
  config.model.norm = 'batch_renorm'
  config.model.se_reduction = 16
  config.model.norm_momentum = 0.99
  config.model.norm_epsilon = 1e-5
  config.model.renorm_r_max = 3.0
  config.model.renorm_d_max = 5.0
  config.model.renorm_warmup_steps = 5000
  config.model.upconv_impl = 'matmul'  # 'matmul' (fast on CPU) or 'xla' (nn.ConvTranspose); same results

  # FREM: multiply B (num_selected) channels of the deepest stage by X (factor).
  config.frem = ml_collections.ConfigDict()
  config.frem.enabled = True
  config.frem.num_selected = 162
  config.frem.factor = 632.0
  config.frem.mode = 'random'  # 'random': re-drawn every epoch; 'fixed': one set for the run

  # SuperVision: loss = (1 - λ) L_final + λ L_sup, λ = weight.
  config.supervision = ml_collections.ConfigDict()
  config.supervision.enabled = False
  config.supervision.weight = 0.3257

  config.lock()
  return config
