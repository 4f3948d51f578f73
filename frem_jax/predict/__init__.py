"""Segmenting images of any size with the best checkpoint of a trained run: `predict_files`, `predict_image`.

The command line is `python -m frem_jax.predict` (predict/__main__.py; docs/predict.md). The code is
in predict/lib.py, loaded on first use (lazy.py), so that the command refuses a bad flag before it
loads JAX.
"""

from frem_jax import lazy

# The default overlap, as a fraction of the run's tile size: 32 pixels at the paper's 256² tiles, and a
# fixed number of pixels would not fit every run (32 is no overlap at all for a run of 32² tiles).
# Here, not in lib.py: the command's --help names it.
DEFAULT_OVERLAP_DIVISOR = 8

__getattr__, __dir__ = lazy.forward(__name__)
