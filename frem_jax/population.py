"""Several runs trained together on one device: one jitted train step, `jax.vmap` over the members.

A member owns its parameters, Adam state, normalisation statistics
(`batch_stats`: batch statistics are taken per member, never across members),
FREM's key, and its B (`frem.num_selected`), X (`frem.factor`) and λ
(`supervision.weight`). The members share the data batches, so their configs
may differ in B, X and λ only (a sweep's trials share `seed`, hence also the
initial parameters and FREM's per-epoch channels). Each member writes its own
run folder (config.json, checkpoints, metrics.jsonl, results.json) as
`train.train_and_evaluate` would, and can be resumed by it.

The CPU kernels run under vmap one member after the other (`cpu_conv`,
'sequential_unrolled'), so a population costs about K single steps on the CPU;
on a GPU/TPU, where the model uses XLA's convolutions, the K members fill the
device (docs/population.md).
"""

import functools
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from frem_jax import datasets
from frem_jax import epochs as epochs_lib
from frem_jax import input_pipeline
from frem_jax import parallel
from frem_jax import steps
from frem_jax import train
from frem_jax import workdir as workdir_lib
from frem_jax.config_validation import validate_config
from frem_jax.errors import TrainingDiverged
from frem_jax.errors import UserError

# The config keys in which members may differ: B, X and λ (runtime inputs of the train step).
MEMBER_KEYS = ('frem.num_selected', 'frem.factor', 'supervision.weight')


def stack(trees: Sequence) -> object:
  """Trees of the same structure stacked leaf by leaf along a new leading (member) axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, i: int):
  """Member `i` of a stacked tree."""
  return jax.tree.map(lambda x: x[i], tree)


@functools.lru_cache(maxsize=None)
def jit_train_step(frem_enabled: bool, supervision_enabled: bool) -> Callable:
  """`steps.train_step` vmapped over the members, states donated.

  fn(states, images, masks, idx, hparams, keys) -> (states, {'loss': [K], …}):
  one batch, `images[idx]` and `masks[idx]`, shared by all members; the
  states, `hparams` (B, X, λ) and FREM's `keys` carry a leading member axis.
  """
  fn = functools.partial(steps.train_step, frem_enabled=frem_enabled,
                         supervision_enabled=supervision_enabled)
  members = jax.vmap(fn, in_axes=(0, None, 0, 0))

  def step(states, images, masks, idx, hparams, keys):
    return members(states, {'image': images[idx], 'mask': masks[idx]}, hparams, keys)

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


def train_population(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                     device=None) -> list:
  """Trains (or resumes) the runs of `configs` in `workdirs` together on `device`.

  Members resumed from different epochs (a population killed between two
  members' checkpoints) are trained as one population per starting epoch.
  A member whose loss diverges leaves the population; the others go on.

  Returns:
    Per member, its results dictionary (as written to its results.json), or
    the TrainingDiverged error that stopped it.
  """
  if len(configs) != len(workdirs):
    raise ValueError(f'{len(configs)} configs but {len(workdirs)} workdirs')
  for config in configs:
    validate_config(config)
  check_members(configs)
  for config, workdir in zip(configs, workdirs):
    workdir_lib.check(workdir, config)
  config = configs[0]
  device = device or parallel.local_devices(1)[0]
  mesh = parallel.make_mesh([device])
  data = input_pipeline.load_dataset(config, config.dataset.data_dir or datasets.default_data_dir(workdirs[0]))
  for c, workdir in zip(configs, workdirs):
    workdir_lib.record(workdir, c)
  model = train.build_model(config, data.num_classes)
  init = steps.create_train_state(
      model, jax.random.fold_in(train.run_key(config.seed), train._INIT_STREAM),  # pylint: disable=protected-access
      data.splits['train'].images.shape[1:], config.learning_rate)
  runs = []
  try:
    for workdir in workdirs:
      runs.append(train.open_run(workdir, init))
    outcomes = [None] * len(configs)
    for start in sorted({run.start_epoch for run in runs}):
      group = [i for i, run in enumerate(runs) if run.start_epoch == start]
      failures = _train_together([configs[i] for i in group], [runs[i] for i in group], data, start, device)
      for j, error in failures.items():
        outcomes[group[j]] = error
    for i, (c, workdir, run) in enumerate(zip(configs, workdirs, runs)):
      if outcomes[i] is None:
        outcomes[i] = train.finish_run(c, workdir, data, model, mesh, run, run.state, train.hyperparams(c))
    return outcomes
  finally:
    for run in runs:
      run.close()


def _train_together(configs, runs, data: input_pipeline.Dataset, start_epoch: int, device) -> dict:
  """Trains members that all resume at `start_epoch` to the end; returns {member: TrainingDiverged}."""
  config = configs[0]
  split = data.splits['train']
  hparams = jax.device_put(stack([train.hyperparams(c) for c in configs]), device)
  states = jax.device_put(stack([run.state for run in runs]), device)
  step = jit_train_step(config.frem.enabled, config.supervision.enabled)
  eval_fn = jit_eval_step(data.num_classes)
  on_device = config.data_on_device and not config.dataset.augment
  if on_device:
    images, masks = jax.device_put(split.images, device), jax.device_put(split.masks, device)
  alive, failures = list(range(len(configs))), {}
  bar = tqdm(range(start_epoch + 1, config.num_epochs + 1), initial=start_epoch, total=config.num_epochs,
             desc=f'epochs ({len(configs)} trials)', unit='epoch', file=sys.stderr)
  for epoch in bar:
    t0 = time.perf_counter()
    keys = jax.device_put(jnp.stack([train.frem_epoch_key(c.seed, epoch, c.frem.mode) for c in configs]), device)
    order = epochs_lib.index_batches(len(split), config.batch_size, config.seed, epoch)
    loss_sum = 0.0
    if on_device:
      for idx in jax.device_put(order.astype(np.int32), device):
        states, m = step(states, images, masks, idx, hparams, keys)
        loss_sum = loss_sum + m['loss']
    else:  # as `epochs.EpochRunner` feeds a single run from the host, augmented there
      rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch, 1]))
      for idx in order:
        batch = {'image': split.images[idx], 'mask': split.masks[idx]}
        if config.dataset.augment:
          batch = input_pipeline.augment_batch(batch, rng)
        states, m = step(states, batch['image'], batch['mask'], np.arange(len(idx)), hparams, keys)
        loss_sum = loss_sum + m['loss']
    losses = np.asarray(loss_sum) / input_pipeline.steps_per_epoch(split, config.batch_size)
    seconds = time.perf_counter() - t0  # the population's time: every member is charged all of it
    sums = (train.evaluate(eval_fn, states, data.splits['validation'], config.eval_batch_size, hparams, keys)
            if train.evaluates(config, epoch) else None)
    for j in list(alive):
      try:
        train.check_finite(configs[j], epoch, float(losses[j]))
      except TrainingDiverged as e:
        failures[j] = e
        alive.remove(j)
        continue
      member_sums = None if sums is None else {k: v[j] for k, v in sums.items()}
      train.end_epoch(configs[j], data, runs[j], epoch, member(states, j), float(losses[j]), seconds,
                      member_sums, keys[j])
    if not alive:
      break
    bar.set_postfix(best_val_miou=' '.join(f'{runs[j].best_miou:.3f}' for j in alive))
  bar.close()
  for j in alive:
    runs[j].state = member(states, j)
  return failures
