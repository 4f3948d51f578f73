"""Running one training epoch: jit steps fed from the host or from device memory, or pmap.

All three share `steps.train_step`, see the same batches in the same order,
and are compiled once per process for a given model and shapes (B, X and λ
are runtime inputs), so a sweep never recompiles. `frem_redraw` (`frem.redraw`,
'epoch' or 'step') is a static choice of the step, as `frem_enabled` is.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from frem_jax import input_pipeline
from frem_jax import parallel
from frem_jax import steps


def _train_step(frem_enabled: bool, supervision_enabled: bool, axis_name=None,
                frem_redraw: str = 'epoch') -> Callable:
  """steps.train_step with its static choices bound: fn(state, batch, hparams, frem_key)."""
  return functools.partial(steps.train_step, frem_enabled=frem_enabled,
                           supervision_enabled=supervision_enabled, axis_name=axis_name,
                           frem_redraw=frem_redraw)


@steps.cache_per_choice
def jit_train_step(frem_enabled: bool, supervision_enabled: bool, mesh: Mesh,
                   frem_redraw: str = 'epoch') -> Callable:
  """train_step under jit: state replicated, batch sharded over the mesh, state donated."""
  repl = parallel.replicated(mesh)
  return jax.jit(_train_step(frem_enabled, supervision_enabled, frem_redraw=frem_redraw),
                 in_shardings=(repl, parallel.batch_sharded(mesh), repl, repl),
                 out_shardings=(repl, repl), donate_argnums=0)


@steps.cache_per_choice
def jit_train_step_on_device(frem_enabled: bool, supervision_enabled: bool, mesh: Mesh,
                             frem_redraw: str = 'epoch') -> Callable:
  """train_step on a batch gathered by index from a split that lives on the device.

  Steps are dispatched asynchronously and nothing returns to the host until
  the epoch's loss is read. (A whole epoch as one `lax.scan` was measured too:
  XLA:CPU ran the step about 6x slower inside the loop; docs/performance.md.)
  """
  fn = _train_step(frem_enabled, supervision_enabled, frem_redraw=frem_redraw)
  sharded = parallel.batch_sharded(mesh)

  def step(state, images, masks, idx, hparams, key):
    batch = jax.lax.with_sharding_constraint({'image': images[idx], 'mask': masks[idx]}, sharded)
    return fn(state, batch, hparams, key)

  repl = parallel.replicated(mesh)
  return jax.jit(step, in_shardings=repl, out_shardings=(repl, repl), donate_argnums=0)


@steps.cache_per_choice
def pmap_train_step(frem_enabled: bool, supervision_enabled: bool, devices: tuple,
                    frem_redraw: str = 'epoch') -> Callable:
  """train_step under pmap: gradients and normalisation statistics averaged over `parallel.PMAP_AXIS`."""
  return jax.pmap(_train_step(frem_enabled, supervision_enabled, parallel.PMAP_AXIS, frem_redraw),
                  axis_name=parallel.PMAP_AXIS, in_axes=(0, 0, None, None), devices=devices,
                  donate_argnums=0)


@steps.cache_per_choice
def jit_eval_step(num_classes: int, mesh: Mesh, frem_at_test: bool = False) -> Callable:
  """steps.eval_sums_step under jit, batch sharded over the mesh: fn(state, batch, hparams, frem_key) -> sums."""
  repl = parallel.replicated(mesh)
  return jax.jit(functools.partial(steps.eval_sums_step, num_classes=num_classes, frem_at_test=frem_at_test),
                 in_shardings=(repl, parallel.batch_sharded(mesh), repl, repl), out_shardings=repl)


def index_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """[steps, batch_size] example indices of one epoch (the order of `input_pipeline.train_batches`)."""
  order = input_pipeline.epoch_order(num_examples, seed, epoch)
  steps_ = num_examples // batch_size
  return np.sort(order[:steps_ * batch_size].reshape(steps_, batch_size), axis=1)


class EpochRunner:
  """Trains one epoch at a time with the configured parallelism and data placement.

  `put` moves a state to the devices in the runner's layout, `get` returns a
  single-copy state for evaluation and checkpoints.
  """

  def __init__(self, split: input_pipeline.Split, batch_size: int, seed: int, *,
               frem_enabled: bool, supervision_enabled: bool, parallelism: str = 'jit',
               data_on_device: bool = True, augment: bool = False, devices: list = (),
               frem_redraw: str = 'epoch'):
    self._split, self._batch_size, self._seed, self._augment = split, batch_size, seed, augment
    self._devices = tuple(devices) or tuple(jax.local_devices())
    parallel.check_divisible(batch_size, len(self._devices))
    self.parallelism = parallelism
    # Augmentation happens on the host, so it feeds batches from there.
    self.data_on_device = data_on_device and parallelism == 'jit' and not augment
    self.mesh = parallel.make_mesh(list(self._devices))
    if parallelism == 'pmap':
      self._step = pmap_train_step(frem_enabled, supervision_enabled, self._devices, frem_redraw)
      return
    if self.data_on_device:
      self._step = jit_train_step_on_device(frem_enabled, supervision_enabled, self.mesh, frem_redraw)
      repl = parallel.replicated(self.mesh)
      self._images = jax.device_put(split.images, repl)
      self._masks = jax.device_put(split.masks, repl)
    else:
      self._step = jit_train_step(frem_enabled, supervision_enabled, self.mesh, frem_redraw)

  def put(self, state: steps.TrainState) -> steps.TrainState:
    """The state laid out for training (replicated over the devices)."""
    if self.parallelism == 'pmap':  # one copy per device along a new leading axis
      n = len(self._devices)
      stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), state)
      return jax.device_put(stacked, parallel.batch_sharded(self.mesh))
    return jax.device_put(state, parallel.replicated(self.mesh))

  def get(self, state: steps.TrainState) -> steps.TrainState:
    """One copy of a state laid out by `put`."""
    if self.parallelism == 'pmap':
      return jax.tree.map(lambda x: x[0], state)
    return state

  def run(self, state, epoch: int, hparams: steps.Hyperparams, key: jax.Array):
    """Trains one epoch; returns the new state and the summed loss (left on the device)."""
    order = index_batches(len(self._split), self._batch_size, self._seed, epoch)
    loss_sum = 0.0
    if self.data_on_device:
      order = jax.device_put(order.astype(np.int32), parallel.replicated(self.mesh))
      for idx in order:
        state, m = self._step(state, self._images, self._masks, idx, hparams, key)
        loss_sum = loss_sum + m['loss']
      return state, loss_sum
    rng = np.random.default_rng(np.random.SeedSequence([self._seed, epoch, 1]))
    for idx in order:
      batch = {'image': self._split.images[idx], 'mask': self._split.masks[idx]}
      if self._augment:
        batch = input_pipeline.augment_batch(batch, rng)
      if self.parallelism == 'pmap':
        n = len(self._devices)
        batch = jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)
        state, m = self._step(state, batch, hparams, key)
        loss_sum = loss_sum + m['loss'][0]
      else:
        state, m = self._step(state, batch, hparams, key)
        loss_sum = loss_sum + m['loss']
    return state, loss_sum
