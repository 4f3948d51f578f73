"""Training and evaluation of U-Net+SE with FREM or SuperVision: `train_and_evaluate(config, workdir)`.

`train_population(configs, workdirs)` trains K such runs together, one vmapped step for all
(train/population.py; the sweep's `search.population`). The code is in train/lib.py, loaded on
first use (lazy.py), so that `python -m frem_jax.train` (train/__main__.py) refuses a bad flag or
config before it loads JAX.
"""

from frem_jax import lazy

__getattr__, __dir__ = lazy.forward(__name__)
