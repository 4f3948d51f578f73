"""The paper's mouse liver experiments (Table 2, Table 4).

  --config=configs/mouse.py              U-Net+SE with FREM, B=162, X=632 (the proposed method)
  --config=configs/mouse.py:baseline     U-Net+SE
  --config=configs/mouse.py:supervision  U-Net+SE with SuperVision, λ=0.3257
  --config=configs/mouse.py:fixed        FREM on 10 fixed channels × 10000 (Table 4)
Set --config.dataset.source_dir to the folder described in docs/datasets.md.
"""

from configs import default

VARIANTS = ('frem', 'baseline', 'supervision', 'fixed')


def get_config(variant: str = 'frem'):
  """The paper's mouse liver settings; `variant` is one of VARIANTS ('' = frem)."""
  variant = variant or 'frem'
  if variant not in VARIANTS:
    raise ValueError(f'unknown variant {variant!r} of configs/mouse.py; use one of {VARIANTS}')
  config = default.get_config()
  config.dataset.name = 'mouse_liver'
  config.dataset.image_size = 256
  # The paper's split, 35/5/10 images (frem_jax/datasets/cell_folder.py: MouseLiver).
  config.dataset.split_fractions = (0.7, 0.1, 0.2)
  config.dataset.split_seed = 0
  config.frem.num_selected = 162
  config.frem.factor = 632.0
  if variant == 'baseline':
    config.frem.enabled = False
  elif variant == 'supervision':
    config.frem.enabled = False
    config.supervision.enabled = True
    config.supervision.weight = 0.3257
    config.search.space = 'supervision'  # python -m frem_jax.search then searches λ
  elif variant == 'fixed':
    config.frem.num_selected = 10
    config.frem.factor = 10000.0
    config.frem.mode = 'fixed'
  return config
