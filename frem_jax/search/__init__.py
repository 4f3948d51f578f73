"""TPE search of B and X (or λ): a resumable outer loop around `train.train_and_evaluate`.

`run_search(config, workdir)`; the command line is `python -m frem_jax.search` (search/__main__.py;
--backend=ray: search/ray_tune.py). The code is in search/lib.py, loaded on first use (lazy.py),
so that the command refuses a bad flag or setting before it loads JAX.
"""

from frem_jax import lazy

__getattr__, __dir__ = lazy.forward(__name__)
