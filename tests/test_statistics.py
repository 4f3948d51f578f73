"""eval.reestimate_statistics: precise FREM-off statistics for evaluation, in the checkpoints, and resume from the training ones."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax import build
from frem_jax import checkpointing
from frem_jax import datasets
from frem_jax import epochs
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import steps
from frem_jax import train
from frem_jax import trained_run
from frem_jax.model.batch_renorm import BatchRenorm
from frem_jax.model.unet import Enhancement
from tests import recompute
from tests.test_feature_magnitudes import load_script
from tests.tiny import DATA_DIR, tiny_config

MESH = parallel.make_mesh(jax.local_devices()[:1])


def plain_batch_norm_forward(model, variables, images):
  """(logits, {layer path: (batch mean, biased batch variance)}): FREM off, every layer normalised by its batch's moments.

  Computed here, around the model's own normalisation: each layer's call is
  replaced by (x - mean) / sqrt(var + eps) * scale + bias of its input x.
  """
  moments = {}

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or not isinstance(module, (BatchRenorm, nn.BatchNorm)):
      return next_fun(*args, **kwargs)
    x = args[0]
    mean, var = jnp.mean(x, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2))
    moments[module.path] = (np.asarray(mean, np.float64), np.asarray(var, np.float64))
    params = module.variables['params']
    return (x - mean) / jnp.sqrt(var + module.epsilon) * params['scale'] + params['bias']

  with nn.intercept_methods(interceptor):
    out, _ = model.apply(variables, images, train=True, enhancement=None, mutable=['batch_stats'])
  return np.asarray(out.logits), moments


def stats_at(tree, path):
  for name in path:
    tree = tree[name]
  return tree


def fresh_state(config, data):
  model = build.build_model(config, data.num_classes)
  return model, steps.create_train_state(model, randomness.init_key(0), (32, 32, 1), 1e-3)


@pytest.mark.parametrize('norm', ['batch_renorm', 'batch_norm'])
def test_reestimated_statistics_are_the_mean_of_the_frem_off_batch_moments(norm):
  config = tiny_config(**{'model.norm': norm, 'eval.reestimate_statistics': True})
  data = datasets.load_dataset(config, DATA_DIR)
  model, state = fresh_state(config, data)
  # Trained statistics far from anything the data gives: none of them may remain.
  rng = np.random.default_rng(0)
  trained = jax.tree_util.tree_map_with_path(
      lambda p, x: (np.full(x.shape, 7, np.int32) if p[-1].key == 'steps'
                    else rng.uniform(50.0, 100.0, x.shape).astype(np.float32)), state.batch_stats)
  epoch = 2
  got = train.reestimator(config, data, MESH)(state.params, trained, epoch)

  order = epochs.index_batches(len(data.splits['train']), config.batch_size, config.seed, epoch)
  per_batch = [plain_batch_norm_forward(model, {'params': state.params, 'batch_stats': trained},
                                        data.splits['train'].images[idx])[1] for idx in order]
  stages = 2 * len(config.model.features) - 1
  assert len(order) == 2 and len(per_batch[0]) == 2 * stages  # both layers of every stage
  for path in per_batch[0]:
    layer = stats_at(got, path)
    np.testing.assert_allclose(layer['mean'], np.mean([m[path][0] for m in per_batch], axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer['var'], np.mean([m[path][1] for m in per_batch], axis=0), rtol=1e-4, atol=1e-5)
    if norm == 'batch_renorm':
      assert int(layer['steps']) == 7  # the warm-up counter stays as trained


def test_eval_output_of_a_frem_model_moves_to_its_frem_off_batch_statistics():
  """Statistics estimated with a large X, as training leaves them, against their re-estimation with FREM off."""
  config = tiny_config(**{'model.norm_momentum': 0.5, 'frem.num_selected': 8, 'frem.factor': 50.0})
  data = datasets.load_dataset(config, DATA_DIR)
  model, state = fresh_state(config, data)
  images = data.splits['train'].images

  @jax.jit
  def frem_on_statistics(batch_stats, batch):
    _, updated = model.apply({'params': state.params, 'batch_stats': batch_stats}, batch, train=True,
                             enhancement=Enhancement(8, 50.0), rngs={'frem': randomness.frem_epoch_key(0, 1, 'random')},
                             mutable=['batch_stats'])
    return updated['batch_stats']

  trained = state.batch_stats
  for idx in epochs.index_batches(len(images), 4, 0, 1).tolist() * 5:
    trained = frem_on_statistics(trained, images[idx])
  reestimated = train.reestimator(config, data, MESH)(state.params, trained, 1)

  logits = steps.jit_logits(model)
  order = epochs.index_batches(len(images), 4, 0, 1)
  off, with_trained, with_reestimated = [], [], []
  for idx in order:
    off.append(plain_batch_norm_forward(model, {'params': state.params, 'batch_stats': trained}, images[idx])[0])
    with_trained.append(np.asarray(logits({'params': state.params, 'batch_stats': trained}, images[idx])))
    with_reestimated.append(np.asarray(logits({'params': state.params, 'batch_stats': reestimated}, images[idx])))
  off, with_trained, with_reestimated = map(np.concatenate, (off, with_trained, with_reestimated))
  # The first layer after FREM saw X-fold inputs: its trained variance is far above the FREM-off one.
  layer = (f'decoder{len(config.model.features) - 2}', 'norm0')
  assert np.mean(stats_at(trained, layer)['var']) > 10 * np.mean(stats_at(reestimated, layer)['var'])
  distance_trained = np.mean(np.abs(with_trained - off))
  distance_reestimated = np.mean(np.abs(with_reestimated - off))
  # Not 0: a batch's own moments are not the average over batches. Measured: 0.046 against 0.194.
  assert distance_reestimated < 0.5 * distance_trained, (distance_reestimated, distance_trained)


def test_checkpoints_hold_the_statistics_their_epoch_was_evaluated_with(tmp_path, monkeypatch):
  """Epoch 1 (no validation: eval_every_epochs=2) keeps the training statistics, epoch 2 the re-estimated ones."""
  saved = {}
  save = checkpointing.save

  def recording_save(manager, epoch, state, meta, val_miou, train_batch_stats=None):
    saved[epoch] = jax.device_get((state.batch_stats, meta, train_batch_stats))  # the next step donates them
    save(manager, epoch, state, meta, val_miou, train_batch_stats)

  monkeypatch.setattr(checkpointing, 'save', recording_save)
  config = tiny_config(num_epochs=2, eval_every_epochs=2, **{'eval.reestimate_statistics': True})
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)

  stats, meta, training = saved[1]
  assert meta['batch_stats'] == 'training'
  recompute.assert_trees_equal(stats, training)
  stats, meta, training = saved[2]
  assert meta['batch_stats'] == 're-estimated' and results['best_epoch'] == 2
  assert results['reestimate_seconds'] == meta['reestimate_seconds'] > 0
  state = recompute.checkpoint_state(workdir, config, 2)
  data = datasets.load_dataset(config, DATA_DIR)
  recompute.assert_trees_equal(state.batch_stats, train.reestimator(config, data, MESH)(state.params, training, 2))
  resumable = recompute.checkpoint_state(workdir, config, 2, train_batch_stats=True)
  recompute.assert_trees_equal(resumable.batch_stats, training)
  assert not np.array_equal(state.batch_stats['decoder0']['norm1']['var'], training['decoder0']['norm1']['var'])
  # Readers of the best checkpoint get the re-estimated statistics with nothing to set.
  recompute.assert_trees_equal(trained_run.load(workdir).variables['batch_stats'], state.batch_stats)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = [json.loads(line) for line in f]
  assert logged[1]['val/miou'] == results['val']['miou']
  gap = load_script('frem_gap').measure(workdir, 'best', passes=0)['val_miou']
  assert gap['frem_off'] == gap['frem_off_precise'] == results['val']['miou']  # re-estimating again changes nothing
