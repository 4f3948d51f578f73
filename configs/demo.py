"""Demo: FREM on the embedded synthetic cell images at 64², narrow widths, 40 to 110 s of training on 2 CPU cores, by CPU.

  --config=configs/demo.py              U-Net+SE with FREM (B=40, X=632)
  --config=configs/demo.py:baseline     U-Net+SE
  --config=configs/demo.py:supervision  U-Net+SE with SuperVision (λ = supervision.weight's default)
"""

from configs import default

VARIANTS = ('frem', 'baseline', 'supervision')


def get_config(variant: str = 'frem'):
  """Small, fast variant of the defaults for a first run on any machine; `variant` is one of VARIANTS."""
  variant = variant or 'frem'
  if variant not in VARIANTS:
    raise ValueError(f'unknown variant {variant!r} of configs/demo.py; use one of {VARIANTS}')
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
  if variant in ('baseline', 'supervision'):
    config.frem.enabled = False
  if variant == 'supervision':
    config.supervision.enabled = True
    config.search.space = 'supervision'  # python -m frem_jax.search then searches λ, as in the paper's configs
  return config
