"""The train state, the train step and the evaluation step (their jitted forms: epochs.py)."""

import functools
import inspect
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from frem_jax import loss as loss_lib
from frem_jax import metrics
from frem_jax import randomness
from frem_jax.model.unet import Enhancement


class TrainState(train_state.TrainState):
  """Parameters, optimizer state and the normalisation statistics (`batch_stats`)."""
  batch_stats: Any


class Hyperparams(NamedTuple):
  """Runtime inputs of the train step, so that a sweep never recompiles it.

  num_selected: B (`frem.num_selected`); factor: X (`frem.factor`);
  supervision_weight: λ (`supervision.weight`).
  """
  num_selected: jax.Array
  factor: jax.Array
  supervision_weight: jax.Array


def make_hyperparams(num_selected: int, factor: float, supervision_weight: float) -> Hyperparams:
  """Hyperparams as device scalars (int32 B, float32 X and λ)."""
  return Hyperparams(jnp.asarray(num_selected, jnp.int32), jnp.asarray(factor, jnp.float32),
                     jnp.asarray(supervision_weight, jnp.float32))


def cache_per_choice(fn: Callable) -> Callable:
  """`functools.lru_cache`, keyed on the arguments with their defaults filled in.

  For the functions that build a compiled step from static choices: f(a, b)
  and f(a, b, frem_redraw='epoch') are one choice, so they must return one
  function (and one compilation), which lru_cache alone would not.
  """
  signature = inspect.signature(fn)
  cached = functools.lru_cache(maxsize=None)(fn)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return cached(*bound.args)

  return wrapper


@functools.lru_cache(maxsize=None)
def adam(learning_rate: float) -> optax.GradientTransformation:
  """Adam, one instance per learning rate: runs in one process share it, and so the compiled step."""
  return optax.adam(learning_rate)


# The initialiser runs once, yet XLA:CPU optimises its per-parameter samplers at length: the
# paper's model compiled in 11.3 s at the default level 2 and 8.1 s at level 1 with the runs' rbg
# keys, 21.5 and 7.9 s with jax's default threefry keys (the tiny test model: 5.0 -> 4.3 s and
# ~26 -> ~4 s), with bit-equal parameters (AMD EPYC Zen 3, jax 0.10.2, 2026-12-07;
# tests/test_unet.py checks them). Level 0 changes them. Other backends keep their defaults.
CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 1}


def _init(model: nn.Module, image_shape: tuple, key: jax.Array) -> dict:
  return model.init({'params': key}, jnp.zeros((1,) + image_shape), train=False)


@functools.lru_cache(maxsize=None)
def _jit_init(model: nn.Module, image_shape: tuple):
  # One compiled initialiser per architecture: a sweep's trials (and halving's rungs) share it.
  options = CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else None
  return jax.jit(functools.partial(_init, model, image_shape), compiler_options=options)


def _train_state(model: nn.Module, variables: dict, learning_rate: float) -> TrainState:
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            batch_stats=variables['batch_stats'], tx=adam(learning_rate))
  # A strongly typed step counter: a weakly typed Python 0 would recompile the second step.
  return state.replace(step=jnp.zeros((), jnp.int32))


def create_train_state(model: nn.Module, key: jax.Array, image_shape: tuple,
                       learning_rate: float) -> TrainState:
  """Initialises parameters and statistics for images of `image_shape` [H, W, C] and Adam."""
  return _train_state(model, _jit_init(model, tuple(image_shape))(key), learning_rate)


def train_state_shapes(model: nn.Module, key: jax.Array, image_shape: tuple,
                       learning_rate: float) -> TrainState:
  """`create_train_state`'s result as shapes and dtypes, compiling nothing (a checkpoint's template)."""
  return jax.eval_shape(
      lambda k: _train_state(model, _init(model, tuple(image_shape), k), learning_rate), key)


def train_step(state: TrainState, batch: dict, hparams: Hyperparams, frem_key: jax.Array, *,
               frem_enabled: bool, supervision_enabled: bool,
               axis_name: Optional[str] = None, frem_redraw: str = 'epoch',
               frem_channels: Optional[jax.Array] = None) -> tuple[TrainState, dict]:
  """One Adam step on softmax cross-entropy, with FREM and/or SuperVision as configured.

  Loss = (1 - λ) L_final + λ L_sup with SuperVision, L_final otherwise.
  `frem_key` is the epoch's FREM key; with `frem_redraw='step'` (`frem.redraw`)
  the channels come from `randomness.frem_step_key(frem_key, state.step)`, a
  new draw every step, with 'epoch' (the paper) from `frem_key` itself.
  `frem_channels`, if given, is the [C] mask of the channels to enhance, drawn
  by the caller from that key (a population's step: train/population.py). With
  `axis_name` (pmap), gradients and metrics are averaged over that axis.

  Returns:
    The new state and {'loss': …} (per-step scalars, left on the device).
  """

  if frem_redraw == 'step':
    frem_key = randomness.frem_step_key(frem_key, state.step)

  def loss_fn(params):
    enhancement = Enhancement(hparams.num_selected, hparams.factor, frem_channels) if frem_enabled else None
    out, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        enhancement=enhancement, rngs={'frem': frem_key}, mutable=['batch_stats'])
    final = loss_lib.cross_entropy(out.logits, batch['mask'])
    loss = final
    if supervision_enabled:
      supervision = loss_lib.cross_entropy(out.supervision_logits, batch['mask'])
      loss = loss_lib.supervision_mix(final, supervision, hparams.supervision_weight)
    return loss, (updates['batch_stats'], final)

  (loss, (batch_stats, final)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  step_metrics = {'loss': loss, 'loss_final': final}
  if axis_name is not None:
    grads, step_metrics = jax.lax.pmean((grads, step_metrics), axis_name)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, step_metrics


def jit_logits(model: nn.Module) -> Callable:
  """`model` in inference mode (FREM off, running statistics) under jit: fn(variables, images) -> logits."""
  return jax.jit(lambda variables, images: model.apply(variables, images, train=False).logits)


def eval_sums_step(state: TrainState, batch: dict, hparams: Hyperparams, frem_key: jax.Array, *,
                   num_classes: int, frem_at_test: bool = False) -> dict:
  """The sums an evaluation pass adds up over a split, for one batch in inference mode.

  With `frem_at_test` (the paper's Table 1) FREM stays on: B and X from
  `hparams`, channels from `frem_key`; otherwise it is the identity.

  Returns:
    'confusion' [K, K]; the feature statistics of the paper's Figs. 3 and 9,
    taken after the stages' ReLU (and SE), before FREM: 'deepest_channel_sum'
    [C] (the deepest stage's activations per channel, summed over pixels and
    images), 'deepest_positions' (images × pixels summed), 'skip_sum' and
    'skip_values' (the skip features concatenated at the first decoder stage:
    their sum and how many values it covers) and 'num_images'. Padding images
    are left out.
  """
  enhancement = Enhancement(hparams.num_selected, hparams.factor) if frem_at_test else None
  out, state_vars = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats}, batch['image'], train=False,
      enhancement=enhancement, rngs={'frem': frem_key}, mutable=['intermediates'])
  inter = state_vars['intermediates']
  weight = batch.get('weight')
  n = batch['image'].shape[0]
  valid = jnp.ones((n,), jnp.float32) if weight is None else weight.reshape(n, -1).max(axis=1)
  # Summed in float32: the features are bfloat16 with half_precision.
  deepest = inter['deepest_features'][0].astype(jnp.float32)
  # A one-stage U-Net has no skip connection.
  skip = (inter['first_skip_features'][0].astype(jnp.float32) if 'first_skip_features' in inter
          else jnp.zeros((n, 1, 1, 1)))
  return {
      'confusion': metrics.confusion_matrix(batch['mask'], jnp.argmax(out.logits, axis=-1),
                                            num_classes, weight),
      'deepest_channel_sum': jnp.einsum('nhwc,n->c', deepest, valid),
      'deepest_positions': valid.sum() * deepest.shape[1] * deepest.shape[2],
      'skip_sum': jnp.einsum('nhwc,n->', skip, valid),
      'skip_values': valid.sum() * skip.shape[1] * skip.shape[2] * skip.shape[3],
      'num_images': valid.sum(),
  }
