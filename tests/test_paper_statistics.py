"""The paper's Table 1 (FREM at test), Table 4 (fixed channels) and Figs. 3/9 (feature statistics)."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frem_jax import datasets
from frem_jax import randomness
from frem_jax import steps
from frem_jax import train
from frem_jax.errors import UserError
from frem_jax.model.unet import Enhancement, UNetSE, frem_channels
from tests import recompute
from tests.tiny import FEATURES, tiny_config


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def enhanced_mask(seed, epoch, mode, b, channels=16):
  return np.asarray(frem_channels(randomness.frem_epoch_key(seed, epoch, mode), channels, b))


def test_fixed_mode_enhances_the_same_channels_in_every_epoch_and_random_mode_does_not():
  fixed = [enhanced_mask(0, e, 'fixed', 5) for e in range(1, 6)]
  assert all(m.sum() == 5 for m in fixed)
  assert all(np.array_equal(m, fixed[0]) for m in fixed)
  drawn = [enhanced_mask(0, e, 'random', 5) for e in range(1, 6)]
  assert all(m.sum() == 5 for m in drawn)
  assert len({m.tobytes() for m in drawn}) == 5
  # That they are the channels the network enhances: tests/test_unet.py.


def test_eval_sums_match_numpy_and_leave_padding_out():
  model = UNetSE(num_classes=3, features=FEATURES, renorm_warmup_steps=4)
  state = steps.create_train_state(model, jax.random.key(0), (32, 32, 1), 1e-3)
  rng = np.random.default_rng(1)  # numpy's draws: eager jax.random calls are programs to compile
  images, masks = rng.standard_normal((3, 32, 32, 1), np.float32), rng.integers(0, 3, (3, 32, 32), np.int32)
  weight = np.ones((3, 32, 32), np.float32)
  weight[2] = 0  # a padding image
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  # Jitted as training runs them: unjitted, each of the model's operations compiles alone (~30 s).
  sums = jax.jit(functools.partial(steps.eval_sums_step, num_classes=3))(
      state, {'image': images, 'mask': masks, 'weight': jnp.asarray(weight)}, hp, jax.random.key(3))
  _, inter = jax.jit(functools.partial(model.apply, train=False, mutable=['intermediates']))(
      {'params': state.params, 'batch_stats': state.batch_stats}, images[:2])
  deepest = np.asarray(inter['intermediates']['deepest_features'][0])  # [2, 16, 16, 16]
  skip = np.asarray(inter['intermediates']['first_skip_features'][0])  # [2, 32, 32, 8]
  assert (deepest >= 0).all() and (skip >= 0).all()  # after ReLU (and SE)
  np.testing.assert_allclose(sums['deepest_channel_sum'], deepest.sum((0, 1, 2)), rtol=1e-5)
  assert float(sums['deepest_positions']) == 2 * 16 * 16
  np.testing.assert_allclose(float(sums['skip_sum']), skip.sum(), rtol=1e-5)
  assert float(sums['skip_values']) == skip.size and float(sums['num_images']) == 2
  assert int(np.asarray(sums['confusion']).sum()) == 2 * 32 * 32

  stats = train.feature_stats(jax.device_get(sums), enhanced_mask(0, 1, 'random', 5))
  assert stats['features/deepest_mean'] == pytest.approx(deepest.mean(), rel=1e-5)
  assert stats['features/skip_mean'] == pytest.approx(skip.mean(), rel=1e-5)
  assert stats['features/all_sum'] == pytest.approx(deepest.sum() / 2, rel=1e-5)
  mask = enhanced_mask(0, 1, 'random', 5)
  assert stats['features/enhanced_sum'] == pytest.approx(deepest[..., mask].sum() / 2, rel=1e-5)
  assert stats['features/enhanced_sum'] + stats['features/other_sum'] == pytest.approx(
      stats['features/all_sum'], rel=1e-5)
  assert 'features/enhanced_sum' not in train.feature_stats(jax.device_get(sums), None)


FREM_RUN_CONFIG = {'eval.frem_at_test': True, 'frem.factor': 20.0}


@pytest.fixture(scope='module')
def frem_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('frem_at_test'))
  config = tiny_config(**FREM_RUN_CONFIG)
  return workdir, train.train_and_evaluate(config, workdir)


def test_frem_at_test_is_reported_beside_the_plain_evaluation(frem_run):
  workdir, results = frem_run
  on = results['frem_at_test']
  assert set(on) == {'val', 'test', 'key'}
  assert on['key'] == "frem_epoch_key(seed=0, epoch=0, mode='random')"
  # Recomputed from the best checkpoint: the documented key, B = 5 and X = 20 on the test images.
  config = tiny_config(**FREM_RUN_CONFIG)
  model, variables = recompute.restore(workdir, config, results['best_epoch'])
  test = datasets.load_dataset(config, config.dataset.data_dir).splits['test']
  enhanced = model.apply(variables, test.images, train=False, enhancement=Enhancement(5, 20.0),
                         rngs={'frem': randomness.frem_epoch_key(0, 0, 'random')}).logits
  plain = model.apply(variables, test.images, train=False).logits
  ious, miou = recompute.iou(test.masks, np.argmax(enhanced, -1), 3)
  assert list(on['test']['iou_per_class'].values()) == pytest.approx(ious, abs=1e-12)
  assert on['test']['miou'] == pytest.approx(miou, abs=1e-12)
  ious, miou = recompute.iou(test.masks, np.argmax(plain, -1), 3)
  assert list(results['test']['iou_per_class'].values()) == pytest.approx(ious, abs=1e-12)
  # X = 20 on 5 of 16 channels changes the predictions.
  assert on['test']['iou_per_class'] != results['test']['iou_per_class']
  with open(f'{workdir}/results.json') as f:
    assert json.load(f)['frem_at_test'] == on


def test_frem_at_test_with_x_equal_1_equals_the_plain_evaluation(tmp_path):
  results = train.train_and_evaluate(
      tiny_config(num_epochs=1, **{'eval.frem_at_test': True, 'frem.factor': 1.0}), str(tmp_path))
  assert results['frem_at_test']['test'] == results['test']
  assert results['frem_at_test']['val'] == results['val']


def test_feature_statistics_are_logged_every_evaluation(frem_run, tmp_path):
  workdir, _ = frem_run
  rows = read_jsonl(f'{workdir}/metrics.jsonl')
  assert [r['epoch'] for r in rows] == [1, 2, 3]
  for r in rows:
    assert r['features/deepest_mean'] > 0 and r['features/skip_mean'] > 0
    assert r['features/enhanced_sum'] + r['features/other_sum'] == pytest.approx(r['features/all_sum'])
  # Each epoch enhances other channels, so the logged sums change.
  assert len({r['features/enhanced_sum'] for r in rows}) == 3
  # Recomputed for the epochs whose checkpoint is kept (the last and the best): the deepest stage's
  # activations on the validation images, per image, over the channels of that epoch's key.
  config = tiny_config(**FREM_RUN_CONFIG)
  validation = datasets.load_dataset(config, config.dataset.data_dir).splits['validation']
  masks = {e: enhanced_mask(0, e, 'random', 5) for e in (1, 2, 3)}
  assert len({m.tobytes() for m in masks.values()}) == 3
  kept = recompute.kept_epochs(workdir)
  assert 3 in kept
  for epoch in kept:
    model, variables = recompute.restore(workdir, config, epoch)
    _, inter = model.apply(variables, validation.images, train=False, mutable=['intermediates'])
    per_image = np.asarray(inter['intermediates']['deepest_features'][0]).sum((0, 1, 2)) / len(validation)
    logged = rows[epoch - 1]
    assert logged['features/all_sum'] == pytest.approx(per_image.sum(), rel=1e-5)
    assert logged['features/enhanced_sum'] == pytest.approx(per_image[masks[epoch]].sum(), rel=1e-5)
    assert logged['features/other_sum'] == pytest.approx(per_image[~masks[epoch]].sum(), rel=1e-5)
    for other in set(masks) - {epoch}:  # another epoch's channels would give another sum
      assert logged['features/enhanced_sum'] != pytest.approx(per_image[masks[other]].sum(), rel=1e-3)
  baseline = str(tmp_path / 'baseline')
  train.train_and_evaluate(tiny_config(num_epochs=2, **{'frem.enabled': False}), baseline)
  rows = read_jsonl(f'{baseline}/metrics.jsonl')
  assert all('features/all_sum' in r and 'features/enhanced_sum' not in r for r in rows)
  assert 'frem_at_test' not in json.load(open(f'{baseline}/results.json'))


def test_frem_at_test_without_frem_is_refused(tmp_path):
  with pytest.raises(UserError, match=r'eval.frem_at_test=True needs frem.enabled=True'):
    train.train_and_evaluate(tiny_config(**{'eval.frem_at_test': True, 'frem.enabled': False}),
                             str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
