"""The keys of a run: everything random is folded in from its seed (and the epoch, or the step)."""

import jax

# Independent PRNG streams derived from the run's seed.
INIT_STREAM, FREM_STREAM = 0, 1
# 'rbg' keys: XLA:CPU compiles the threefry initialisers of the whole network
# about 3x slower (7.4 s vs 2.3 s for a tiny U-Net), and every run pays it.
PRNG_IMPL = 'rbg'


def run_key(seed: int) -> jax.Array:
  """The root PRNG key of a run; every other key is folded in from it."""
  return jax.random.key(seed, impl=PRNG_IMPL)


def init_key(seed: int) -> jax.Array:
  """The key of the parameters' initialiser."""
  return jax.random.fold_in(run_key(seed), INIT_STREAM)


def frem_epoch_key(seed: int, epoch: int, mode: str) -> jax.Array:
  """FREM's key for `epoch`: new channels every epoch ('random'), or the same all run ('fixed')."""
  base = jax.random.fold_in(run_key(seed), FREM_STREAM)
  return base if mode == 'fixed' else jax.random.fold_in(base, epoch)


def frem_step_key(epoch_key: jax.Array, step) -> jax.Array:
  """FREM's key for global training step `step` under `frem.redraw='step'`: new channels every step.

  `step` is the train state's step counter (a traced value inside the train
  step), which checkpoints carry, so a resumed run draws what a straight run draws.
  """
  return jax.random.fold_in(epoch_key, step)
