"""The model built from a config calls the CPU kernels (so the reference and 2-device tests compare them with XLA)."""

import jax
import numpy as np
import pytest

from frem_jax import build
from frem_jax import epochs
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import steps
from tests.kernel_calls import inference_targets, kernel_calls, train_targets
from tests.tiny import KERNEL_FEATURES, tiny_config


def lowered_steps(layers):
  """The training loop's train step (data on the device) and inference, lowered for a 16-multiple model."""
  config = tiny_config(**{'model.features': KERNEL_FEATURES, 'model.layers': layers})
  model = build.build_model(config, 3)
  state = steps.train_state_shapes(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  images = jax.ShapeDtypeStruct((8, 32, 32, 1), np.float32)
  masks = jax.ShapeDtypeStruct((8, 32, 32), np.int32)
  idx = jax.ShapeDtypeStruct((4,), np.int32)
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  train_fn = epochs.jit_train_step_on_device(True, False, mesh)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return (train_fn.lower(state, images, masks, idx, hp, randomness.frem_epoch_key(0, 1, 'random')),
          steps.jit_logits(model).lower(variables, images))


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the kernels are XLA:CPU custom calls')
def test_auto_model_runs_its_convolutions_on_the_cpu_kernels():
  train_step, inference = lowered_steps('auto')
  assert kernel_calls(train_step) == train_targets()
  assert kernel_calls(inference) == inference_targets()
  # The XLA model has none: the check above tells the two apart.
  train_step, inference = lowered_steps('flax')
  assert kernel_calls(train_step) == set() and kernel_calls(inference) == set()
