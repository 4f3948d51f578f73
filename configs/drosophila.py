"""The paper's Drosophila ssTEM experiments (Table 3): 256² tiles, 4 classes, split by section.

  --config=configs/drosophila.py              U-Net+SE with FREM, B=8, X=250 (the proposed method)
  --config=configs/drosophila.py:baseline     U-Net+SE
  --config=configs/drosophila.py:supervision  U-Net+SE with SuperVision, λ=0.2781
  --config=configs/drosophila.py:fixed        FREM on 10 fixed channels × 10000 (the mouse Table 4 setting)
The data folder is --config.dataset.source_dir (or $FREM_DROSOPHILA_DIR): the one that holds stack1/.
"""

from configs import default

VARIANTS = ('frem', 'baseline', 'supervision', 'fixed')


def get_config(variant: str = 'frem'):
  """The paper's Drosophila settings; `variant` is one of VARIANTS ('' = frem)."""
  variant = variant or 'frem'
  if variant not in VARIANTS:
    raise ValueError(f'unknown variant {variant!r} of configs/drosophila.py; use one of {VARIANTS}')
  config = default.get_config()
  config.dataset.name = 'drosophila_vnc'
  config.dataset.image_size = 256
  config.frem.num_selected = 8
  config.frem.factor = 250.0
  if variant == 'baseline':
    config.frem.enabled = False
  elif variant == 'supervision':
    config.frem.enabled = False
    config.supervision.enabled = True
    config.supervision.weight = 0.2781
    config.search.space = 'supervision'  # python -m frem_jax.search then searches λ
  elif variant == 'fixed':
    config.frem.num_selected = 10
    config.frem.factor = 10000.0
    config.frem.mode = 'fixed'
  return config
