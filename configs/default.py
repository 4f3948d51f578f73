"""The paper's defaults: U-Net+SE with FREM, batch renormalisation, Adam, 2000 epochs.

Every experiment config starts from `get_config()` here and overrides keys;
docs/config.md documents each key. The returned config is locked: assigning a key
that does not exist here is an error, so a typo never passes silently.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default configuration (docs/config.md lists every key)."""
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
  config.data_on_device = True  # keep the training split on the device; steps gather their batch there (no host copy)
  # Compute in bfloat16; parameters, optimizer state, normalisation statistics and the loss stay
  # float32 (flax's imagenet example: the model's dtype / param_dtype). docs/performance.md.
  config.half_precision = False

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'synthetic_cells'
  config.dataset.image_size = 256
  config.dataset.num_train = 35
  config.dataset.num_validation = 5
  config.dataset.num_test = 10
  config.dataset.seed = 0
  config.dataset.source_dir = ''  # the real datasets' source folder (docs/datasets.md)
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
  # How the convolutions are computed (same parameters, same results to float32 rounding):
  # 'auto' (the CPU wing's fast layers on the CPU backend, flax's elsewhere), 'flax' or 'cpu'.
  config.model.layers = 'auto'

  # FREM: multiply B (num_selected) channels of the deepest stage by X (factor).
  config.frem = ml_collections.ConfigDict()
  config.frem.enabled = True
  config.frem.num_selected = 162
  config.frem.factor = 632.0
  config.frem.mode = 'random'  # 'random': re-drawn every epoch; 'fixed': one set for the run
  # When 'random' channels are re-drawn: 'epoch' (the paper: every step of an epoch enhances the same
  # channels) or 'step' (a new draw every training step).
  config.frem.redraw = 'epoch'

  # SuperVision: loss = (1 - λ) L_final + λ L_sup, λ = weight.
  config.supervision = ml_collections.ConfigDict()
  config.supervision.enabled = False
  config.supervision.weight = 0.3257

  config.eval = ml_collections.ConfigDict()
  # The paper's Table 1: also evaluate the best checkpoint with FREM kept on (the channels of
  # FREM's epoch-0 key, which training never uses; in 'fixed' mode the fixed channels).
  config.eval.frem_at_test = False
  # Drosophila: the test sections are also segmented whole (1024², overlapping 256² windows, logits
  # averaged) and scored as wholes; this is the windows' overlap in pixels.
  config.eval.full_section_overlap = 64
  # Not in the paper: before every evaluation, replace the normalisation layers' running statistics
  # by their precise FREM-off average over one pass of the training split (for evaluation only).
  config.eval.reestimate_statistics = False

  # TPE search (python -m frem_jax.search): 'frem' searches B and X, 'supervision' searches λ.
  config.search = ml_collections.ConfigDict()
  config.search.space = 'frem'
  config.search.num_selected_range = (1, 0)  # B in [lo, hi]; hi 0 = C, the deepest stage's channels
  config.search.factor_range = (1.0, 1000.0)  # X (the paper's Table 4 used 10000: widen here)
  config.search.weight_range = (0.0, 1.0)  # λ
  config.search.max_evals = ml_collections.config_dict.placeholder(int)  # None: 50 ('frem'), 15 ('supervision')
  config.search.seed = 0  # hyperopt's own randomness
  config.search.n_startup_jobs = 20  # random trials before TPE models the results (hyperopt's default)
  # Successive halving (ASHA, docs/search.md): trials train rung by rung, min_epochs · η^k epochs
  # up to num_epochs, and only the top 1/η at a rung go on. False: every trial trains num_epochs (the paper).
  config.search.halving = False
  config.search.min_epochs = ml_collections.config_dict.placeholder(int)  # the first rung; None: num_epochs / η^4
  config.search.reduction_factor = 3  # η
  # Trials trained together per device, K runs in one vmapped train step (docs/population.md);
  # 1 = one trial at a time per device (the paper's protocol).
  config.search.population = 1

  config.lock()
  return config
