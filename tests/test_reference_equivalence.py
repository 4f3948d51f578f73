"""The train step on the CPU wing's layers equals the one on flax's own (nn.Conv, nn.ConvTranspose, nn.max_pool) to 1e-4."""

import importlib.util
import os

import jax
import numpy as np

from frem_jax import datasets
from frem_jax import input_pipeline
from frem_jax import loss
from frem_jax import randomness
from frem_jax import steps
from frem_jax.cpu import layers as cpu_layers
from frem_jax.model.unet import UNetSE
from tests.tiny import DATA_DIR, KERNEL_FEATURES, tiny_config


def first_step_gradients(model, state, batch):
  """Gradients of the plain cross-entropy (no FREM) at the initial parameters."""
  def objective(params):
    out, _ = model.apply({'params': params, 'batch_stats': state.batch_stats}, batch['image'],
                         train=True, mutable=['batch_stats'])
    return loss.cross_entropy(out.logits, batch['mask'])
  return jax.device_get(jax.jit(jax.grad(objective))(state.params))


def test_optimised_train_steps_match_the_reference():
  config = tiny_config()
  data = datasets.load_dataset(config, DATA_DIR)
  batches = list(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  runs = {}
  # KERNEL_FEATURES, so that the optimised model runs every convolution on the CPU kernels.
  for impl in ('optimised', 'reference'):
    fast = impl == 'optimised'
    model = UNetSE(num_classes=3, features=KERNEL_FEATURES, renorm_warmup_steps=2,
                   **(cpu_layers.LAYERS if fast else {}))
    state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
    step = jax.jit(lambda s, b: steps.train_step(s, b, hp, randomness.frem_epoch_key(0, 1, 'random'),
                                                 frem_enabled=True, supervision_enabled=False))
    grads = first_step_gradients(model, state, batches[0])
    losses = []
    for _ in range(3):
      for batch in batches:
        state, m = step(state, batch)
        losses.append(float(m['loss']))
    runs[impl] = (losses, state.params, grads)
  np.testing.assert_allclose(runs['optimised'][0], runs['reference'][0], rtol=1e-4)
  # Adam moves every parameter by up to the learning rate (1e-3) per step whatever the gradient's
  # size, so for the few parameters whose gradients are near zero, rounding decides the sign of
  # a step: after 6 steps (at most 6e-3 of movement) those differ by up to ~1.5e-4.
  for a, b in zip(jax.tree.leaves(runs['optimised'][1]), jax.tree.leaves(runs['reference'][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-4)
  # The first step's gradients, leaf by leaf, to 1e-4 of the leaf's largest entry.
  for a, b in zip(jax.tree.leaves(runs['optimised'][2]), jax.tree.leaves(runs['reference'][2])):
    assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b))


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
  assert module.images_per_s(ours, torch) == {
      'frem_jax': {'train_b1': 1.0, 'train_b4': 1.5, 'infer_b8': 6.0},
      'torch': {'train_b4': 3.0, 'train_b1': 4.0, 'infer_b8': 4.0}}
  cpuinfo = ('processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n'
             'flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\nprocessor\t: 1\n'
             'model name\t: other\nflags\t\t: fpu\n')
  assert module.cpu(cpuinfo) == {'model': 'Intel(R) Xeon(R) Platinum 8481C', 'isa': {
      'AMX-BF16': True, 'AMX-TILE': True, 'AVX512-BF16': True, 'AVX-512': True, 'AVX2': True}}
  assert module.cpu('model name : AMD EPYC\nflags : avx2 avx512f\n')['isa'] == {
      'AMX-BF16': False, 'AMX-TILE': False, 'AVX512-BF16': False, 'AVX-512': True, 'AVX2': True}
