"""Precise re-estimation of the normalisation statistics for evaluation (`eval.reestimate_statistics`).

Not part of the paper. FREM multiplies B (`frem.num_selected`) channels of the
deepest stage by X (`frem.factor`) in training only, so the running statistics
of the layers after it are estimated on X-fold enlarged inputs that never occur
at test. Before an evaluation, the statistics can be replaced by "precise batch
norm" ones (as pycls / Detectron2's PreciseBN): for every normalisation layer,
the average over batches of its batch mean and biased batch variance, with
FREM off and every layer in plain batch-norm mode. An average, not a running
average: one pass over the training split gives it, and the trained
statistics leave no trace in it.

The batch moments come from a twin of the model (`moments_config`): the same
parameters, with momentum 0 (the running statistics a training-mode forward
returns are then exactly the batch's moments) and batch renorm's r_max = 1,
d_max = 0 (r = 1, d = 0: plain batch norm, whatever the step counter). flax's
`nn.BatchNorm` (`model.norm='batch_norm'`) is plain batch norm already and
gets momentum 0 too.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import ml_collections
import numpy as np

from frem_jax import parallel


def moments_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the model's normalisation set so that a training-mode forward returns each batch's moments."""
  twin = config.copy_and_resolve_references()
  twin.model.norm_momentum = 0.0
  twin.model.renorm_r_max = 1.0
  twin.model.renorm_d_max = 0.0
  return twin


def _leaf_name(path) -> str:
  return str(getattr(path[-1], 'key', path[-1]))


def _accumulate(model, sums, params, images):
  """`sums` plus the batch moments of `images` from `model` (a `moments_config` twin), FREM off."""
  # Neutral statistics in: the forward then depends on the parameters and the batch alone
  # (r and d are clipped to 1 and 0 anyway, but an inf or NaN in trained ones would leak through 0 * x).
  neutral = jax.tree_util.tree_map_with_path(
      lambda p, s: jnp.ones_like(s) if _leaf_name(p) == 'var' else jnp.zeros_like(s), sums)
  _, updated = model.apply({'params': params, 'batch_stats': neutral}, images, train=True,
                           enhancement=None, mutable=['batch_stats'])
  return jax.tree.map(jnp.add, sums, updated['batch_stats'])


@functools.lru_cache(maxsize=None)
def jit_accumulate(model, mesh: Mesh) -> Callable:
  """fn(sums, params, images) -> sums + the batch's moments, under jit, batch sharded over `mesh`.

  On several devices the moments are those of the global batch (jnp.mean over
  a sharded axis), as a pmap train step's are (its statistics are averaged
  over the devices), so a `pmap` run is re-estimated by this jit too. `model`
  is a `moments_config` twin built without an axis name.
  """
  repl = parallel.replicated(mesh)
  return jax.jit(functools.partial(_accumulate, model),
                 in_shardings=(repl, repl, parallel.batch_sharded(mesh)), out_shardings=repl,
                 donate_argnums=0)


@functools.lru_cache(maxsize=None)
def jit_population_accumulate(model) -> Callable:
  """`jit_accumulate` vmapped over a population's members (train/population.py): sums and params stacked."""
  return jax.jit(jax.vmap(functools.partial(_accumulate, model), in_axes=(0, 0, None)), donate_argnums=0)


def reestimate(accumulate: Callable, params, batch_stats, images: np.ndarray, order: np.ndarray):
  """`batch_stats` with every mean and variance replaced by its average over the batches `images[order[i]]`.

  Args:
    accumulate: `jit_accumulate` or `jit_population_accumulate` of a `moments_config` twin.
    params, batch_stats: the trained model's (stacked over members for a population).
    images: the training split's images [N, H, W, C] (on the host).
    order: [steps, batch] indices (an epoch's `epochs.index_batches`).

  Returns:
    A tree like `batch_stats`; batch renorm's step counters are kept as trained.
  """
  sums = jax.tree.map(jnp.zeros_like, batch_stats)
  for idx in order:
    sums = accumulate(sums, params, images[idx])
  return jax.tree_util.tree_map_with_path(
      lambda p, s, trained: trained if _leaf_name(p) == 'steps' else s / len(order), sums, batch_stats)
