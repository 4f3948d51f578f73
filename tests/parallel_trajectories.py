"""Loss trajectories of a few training steps on 1 and on 2 devices; run with 2 host devices.

Prints one JSON line: {"jit": {"1": [...], "2": [...]}, "pmap": {...}}.
"""

import json

import jax
import numpy as np

from frem_jax import build
from frem_jax import datasets
from frem_jax import epochs
from frem_jax import randomness
from frem_jax import steps
from tests.tiny import DATA_DIR, tiny_config


def trajectory(parallelism: str, num_devices: int, num_epochs: int = 3) -> list:
  # Widths in multiples of 16: every conv and up-conv runs on the CPU kernels (custom calls,
  # which the jit partitioner must handle too).
  config = tiny_config(**{'model.norm': 'batch_renorm', 'model.renorm_warmup_steps': 2,
                          'model.features': (16, 16, 32)})
  data = datasets.load_dataset(config, DATA_DIR)
  axis = 'batch' if parallelism == 'pmap' else None
  model = build.build_model(config, data.num_classes, axis)
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  runner = epochs.EpochRunner(data.splits['train'], 4, 0, frem_enabled=True, supervision_enabled=False,
                              parallelism=parallelism, data_on_device=False,
                              devices=jax.local_devices()[:num_devices])
  s = runner.put(state)
  losses = []
  for epoch in range(1, num_epochs + 1):
    s, loss_sum = runner.run(s, epoch, steps.make_hyperparams(5, 20.0, 0.0),
                             randomness.frem_epoch_key(0, epoch, 'random'))
    losses.append(float(loss_sum))
  final = runner.get(s)
  # The running means' absolute sum: a plain sum cancels and would magnify rounding.
  return losses + [float(np.abs(np.asarray(final.batch_stats['deepest']['norm1']['mean'])).sum())]


if __name__ == '__main__':
  assert jax.local_device_count() == 2, jax.devices()
  print(json.dumps({p: {str(n): trajectory(p, n) for n in (1, 2)} for p in ('jit', 'pmap')}))
