"""The optimised train step equals a straightforward reference (nn.ConvTranspose up-convs) to 1e-4."""

import importlib.util
import os

import jax
import numpy as np

from frem_jax import input_pipeline
from frem_jax import steps
from frem_jax import train
from frem_jax.unet import UNetSE
from tests.tiny import DATA_DIR, tiny_config


def test_matmul_upconv_train_steps_match_conv_transpose_reference():
  config = tiny_config()
  data = input_pipeline.load_dataset(config, DATA_DIR)
  batches = list(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  runs = {}
  for impl in ('matmul', 'xla'):
    model = UNetSE(num_classes=3, features=(4, 8, 16), upconv_impl=impl, renorm_warmup_steps=2)
    state = steps.create_train_state(model, train.run_key(0), (32, 32, 1), 1e-3)
    step = jax.jit(lambda s, b: steps.train_step(s, b, hp, train.frem_epoch_key(0, 1, 'random'),
                                                 frem_enabled=True, supervision_enabled=False))
    losses = []
    for _ in range(3):
      for batch in batches:
        state, m = step(state, batch)
        losses.append(float(m['loss']))
    runs[impl] = (losses, state.params)
  np.testing.assert_allclose(runs['matmul'][0], runs['xla'][0], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(runs['matmul'][1]), jax.tree.leaves(runs['xla'][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_side_by_side_ratios():
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'launch', 'bench_vs_torch.py')
  spec = importlib.util.spec_from_file_location('bench_vs_torch', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  ours = {'train': [{'batch': 1, 'images_per_s': 1.0}, {'batch': 4, 'images_per_s': 1.5}],
          'infer': [{'batch': 8, 'images_per_s': 6.0}]}
  torch = {'eager': {'train': [{'batch': 4, 'images_per_s': 3.0}, {'batch': 1, 'images_per_s': 4.0}],
                     'infer': {'batch': 8, 'images_per_s': 4.0}}}
  assert module.ratios(ours, torch) == {'train_b1': 0.25, 'train_b4': 0.5, 'infer_b8': 1.5}
  assert module.last_json_line('noise\n{"a": 1}\nmore\n') == {'a': 1}
