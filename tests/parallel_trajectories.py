"""Loss trajectories of a few training steps on 1 and on 2 devices; run with 2 host devices.

Prints one JSON line: {"jit": {"1": [...], "2": [...]}, "jit_on_device": {"2": [...]}, "pmap": {...},
"kernels": {"jit": [...], ...}}: "jit" feeds batches from the host, "jit_on_device" gathers
them from the split in device memory (the default; on 1 device tests/test_train.py compares
it with "jit"); "kernels" lists the CPU kernels each 2-device train step calls.
"""

import json

import jax
import numpy as np

from frem_jax import build
from frem_jax import datasets
from frem_jax import epochs
from frem_jax import randomness
from frem_jax import steps
from tests.kernel_calls import kernel_calls
from tests.tiny import DATA_DIR, KERNEL_FEATURES, tiny_config

# name: (parallelism, data_on_device, device counts); every 2-device run is compared with jit's
# 1-device run (pmap on 1 device would only add a compile of the same arithmetic).
RUNS = {'jit': ('jit', False, (1, 2)), 'jit_on_device': ('jit', True, (2,)), 'pmap': ('pmap', False, (2,))}


def trajectory(parallelism: str, data_on_device: bool, num_devices: int, num_epochs: int = 3):
  """The losses and final statistics, and the kernels the step calls (lowered, not run again)."""
  # KERNEL_FEATURES: every conv and up-conv runs on the CPU kernels (custom calls, which the jit
  # partitioner must handle too).
  config = tiny_config(**{'model.norm': 'batch_renorm', 'model.renorm_warmup_steps': 2,
                          'model.features': KERNEL_FEATURES})
  data = datasets.load_dataset(config, DATA_DIR)
  axis = 'batch' if parallelism == 'pmap' else None
  model = build.build_model(config, data.num_classes, axis)
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  runner = epochs.EpochRunner(data.splits['train'], 4, 0, frem_enabled=True, supervision_enabled=False,
                              parallelism=parallelism, data_on_device=data_on_device,
                              devices=jax.local_devices()[:num_devices])
  assert runner.data_on_device == data_on_device
  s = runner.put(state)
  losses = []
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  for epoch in range(1, num_epochs + 1):
    s, loss_sum = runner.run(s, epoch, hp, randomness.frem_epoch_key(0, epoch, 'random'))
    losses.append(float(loss_sum))
  final = runner.get(s)
  # The running means' absolute sum: a plain sum cancels and would magnify rounding.
  losses.append(float(np.abs(np.asarray(final.batch_stats['deepest']['norm1']['mean'])).sum()))
  return losses, sorted(kernel_calls(lower_step(runner, s, data.splits['train'], hp)))


def lower_step(runner, state, split, hp):
  key = randomness.frem_epoch_key(0, 1, 'random')
  n = len(runner.mesh.devices.ravel())
  images = jax.ShapeDtypeStruct((4,) + split.images.shape[1:], split.images.dtype)
  masks = jax.ShapeDtypeStruct((4,) + split.masks.shape[1:], split.masks.dtype)
  if runner.parallelism == 'pmap':
    per_device = lambda x: jax.ShapeDtypeStruct((n, x.shape[0] // n) + x.shape[1:], x.dtype)
    return epochs.pmap_train_step(True, False, tuple(runner.mesh.devices.ravel())).lower(
        state, {'image': per_device(images), 'mask': per_device(masks)}, hp, key)
  if runner.data_on_device:
    idx = jax.ShapeDtypeStruct((4,), np.int32)
    return epochs.jit_train_step_on_device(True, False, runner.mesh).lower(
        state, images, masks, idx, hp, key)
  return epochs.jit_train_step(True, False, runner.mesh).lower(state, {'image': images, 'mask': masks},
                                                                hp, key)


if __name__ == '__main__':
  assert jax.local_device_count() == 2, jax.devices()
  out = {'kernels': {}}
  for name, (parallelism, on_device, device_counts) in RUNS.items():
    out[name] = {}
    for n in device_counts:
      out[name][str(n)], kernels = trajectory(parallelism, on_device, n)
    out['kernels'][name] = kernels
  print(json.dumps(out))
