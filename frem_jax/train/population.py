"""A population's train step: K runs' states stacked, `steps.train_step` under `jax.vmap` over the members.

A member owns its parameters, Adam state, normalisation statistics
(`batch_stats`: batch statistics are taken per member, never across members),
FREM's key, and its B (`frem.num_selected`), X (`frem.factor`) and λ
(`supervision.weight`). The members share the data batches, so their configs
may differ in B, X and λ only (a sweep's trials share `seed`, hence also the
initial parameters and FREM's per-epoch channels). `train.train_population`
trains them; each member writes its own run folder (config.json, checkpoints,
metrics.jsonl, results.json) as `train.train_and_evaluate` would, and can be
resumed by it.

The CPU kernels run under vmap one member after the other (`frem_jax.cpu.ffi`,
'sequential_unrolled'), so a population costs about K single steps on the CPU;
on a GPU/TPU, where the model uses XLA's convolutions, the K members fill the
device (docs/population.md).
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from frem_jax import randomness
from frem_jax import steps
from frem_jax import workdir as workdir_lib
from frem_jax.errors import UserError
from frem_jax.model import unet

# The config keys in which members may differ: B, X and λ (runtime inputs of the train step).
MEMBER_KEYS = ('frem.num_selected', 'frem.factor', 'supervision.weight')


def stack(trees: Sequence) -> object:
  """Trees of the same structure stacked leaf by leaf along a new leading (member) axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, i: int):
  """Member `i` of a stacked tree."""
  return jax.tree.map(lambda x: x[i], tree)


def _draws(keys, step_counters, num_selected, num_channels: int, frem_redraw: str) -> jax.Array:
  """[K, C]: each member's enhanced channels, drawn one member at a time from its key (and step, `frem.redraw='step'`).

  Not under vmap: 'rbg' keys (randomness.PRNG_IMPL) are not vmap-invariant, and
  drawn there member j > 0 would enhance other channels than its single run.
  """
  draws = []
  for j in range(keys.shape[0]):
    key = keys[j] if frem_redraw == 'epoch' else randomness.frem_step_key(keys[j], step_counters[j])
    draws.append(unet.frem_channels(key, num_channels, num_selected[j]))
  return jnp.stack(draws)


@steps.cache_per_choice
def jit_train_step(frem_enabled: bool, supervision_enabled: bool, num_channels: int,
                   frem_redraw: str = 'epoch') -> Callable:
  """`steps.train_step` vmapped over the members, states donated.

  fn(states, images, masks, idx, hparams, keys) -> (states, {'loss': [K], …}):
  one batch, `images[idx]` and `masks[idx]`, shared by all members; the
  states, `hparams` (B, X, λ) and FREM's epoch `keys` carry a leading member
  axis. `num_channels`: C, the deepest stage's width (`model.features[-1]`);
  `frem_redraw` (`frem.redraw`): 'step' draws with each member's step counter.
  """

  def member_step(state, batch, hparams, key, channels):
    return steps.train_step(state, batch, hparams, key, frem_enabled=frem_enabled,
                            supervision_enabled=supervision_enabled, frem_redraw=frem_redraw,
                            frem_channels=channels)

  members = jax.vmap(member_step, in_axes=(0, None, 0, 0, 0))

  def step(states, images, masks, idx, hparams, keys):
    channels = _draws(keys, states.step, hparams.num_selected, num_channels, frem_redraw)
    return members(states, {'image': images[idx], 'mask': masks[idx]}, hparams, keys, channels)

  return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=None)
def jit_eval_step(num_classes: int) -> Callable:
  """`steps.eval_sums_step` vmapped over the members: fn(states, batch, hparams, keys) -> sums with a member axis."""
  return jax.jit(jax.vmap(functools.partial(steps.eval_sums_step, num_classes=num_classes),
                          in_axes=(0, None, 0, 0)))


def check_members(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """UserError unless there are members and their configs differ in MEMBER_KEYS (B, X, λ) only."""
  if not configs:
    raise UserError('a population needs at least one member config')
  first = workdir_lib.config_to_json(configs[0])
  for i, config in enumerate(configs[1:], 1):
    diffs = workdir_lib.config_differences(first, workdir_lib.config_to_json(config), MEMBER_KEYS)
    if diffs:
      key, a, b = diffs[0]
      raise UserError(f'population member {i} differs from member 0 in {key} ({a!r} -> {b!r}); '
                      f'members may differ only in {", ".join(MEMBER_KEYS)}')
