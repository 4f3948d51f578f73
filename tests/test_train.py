"""End-to-end training on tiny synthetic data: one step, results, resume, guards."""

import json
import os

import jax
import numpy as np
import pytest

from frem_jax import build
from frem_jax import datasets
from frem_jax import epochs
from frem_jax import input_pipeline
from frem_jax import loss
from frem_jax import parallel
from frem_jax import randomness
from frem_jax import statistics
from frem_jax import steps
from frem_jax import train
from frem_jax.errors import TrainingDiverged, UserError
from frem_jax.model import frem
from tests import recompute
from tests.tiny import DATA_DIR, tiny_config


MESH = parallel.make_mesh(jax.local_devices()[:1])


def single_device_step(frem_enabled, supervision_enabled, frem_redraw='epoch'):
  return epochs.jit_train_step(frem_enabled, supervision_enabled, MESH, frem_redraw)


def placed_state(model):
  """A fresh train state laid out as the training loop lays it out (replicated on the mesh)."""
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  return jax.device_put(state, parallel.replicated(MESH))


def test_one_whole_training_step_lowers_the_loss_on_its_batch():
  config = tiny_config()
  data = datasets.load_dataset(config, DATA_DIR)
  model = build.build_model(config, data.num_classes)
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-2)
  train_fn = single_device_step(True, False)
  batch = next(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  key = randomness.frem_epoch_key(0, 1, 'random')
  hp = steps.make_hyperparams(5, 2.0, 0.0)
  losses = []
  for _ in range(5):
    state, m = train_fn(state, batch, hp, key)
    losses.append(float(m['loss']))
  assert int(state.step) == 5
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert int(state.batch_stats['deepest']['norm0']['steps']) == 5  # renorm's step counter advanced


def test_b_x_and_lambda_never_recompile_the_train_step():
  config = tiny_config(**{'supervision.enabled': True})
  data = datasets.load_dataset(config, DATA_DIR)
  model = build.build_model(config, data.num_classes)
  state = placed_state(model)
  train_fn = single_device_step(True, True)
  before = train_fn._cache_size()
  batch = next(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  for b, x, lam in [(1, 2.0, 0.1), (16, 632.0, 0.9), (0, 1.0, 0.0)]:
    state, _ = train_fn(state, batch, steps.make_hyperparams(b, x, lam), randomness.frem_epoch_key(0, b, 'random'))
  assert train_fn._cache_size() - before == 1


@pytest.mark.parametrize('variant', ['paper', 'step_redraw_reestimated'])
def test_runs_with_other_b_x_lambda_reuse_the_compiled_epoch(tmp_path, variant):
  """Two runs in one process that differ only in B, X and λ compile the train step (and the re-estimation) once."""
  options = RESUMED[variant]
  mesh = parallel.make_mesh(jax.local_devices())
  fns = [epochs.jit_train_step_on_device(True, True, mesh, options.get('frem.redraw', 'epoch'))]
  if options:
    twin = build.build_model(statistics.moments_config(tiny_config(**{'supervision.enabled': True})), 3)
    fns.append(statistics.jit_accumulate(twin, mesh))
  before = [fn._cache_size() for fn in fns]
  for i, (b, x, lam) in enumerate([(3, 10.0, 0.2), (12, 500.0, 0.7)]):
    config = tiny_config(num_epochs=1, **{'frem.num_selected': b, 'frem.factor': x,
                                          'supervision.enabled': True, 'supervision.weight': lam, **options})
    train.train_and_evaluate(config, str(tmp_path / f'trial{i}'))
  assert [fn._cache_size() - n for fn, n in zip(fns, before)] == [1] * len(fns)


def test_epoch_on_the_device_equals_host_fed_steps():
  config = tiny_config()
  data = datasets.load_dataset(config, DATA_DIR)
  model = build.build_model(config, data.num_classes)
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  hp, key = steps.make_hyperparams(5, 20.0, 0.0), randomness.frem_epoch_key(0, 1, 'random')
  results = {}
  for on_device in (True, False):
    runner = epochs.EpochRunner(data.splits['train'], 4, 0, frem_enabled=True, supervision_enabled=False,
                                data_on_device=on_device)
    s = runner.put(jax.tree.map(jax.numpy.copy, state))
    losses = []
    for epoch in (1, 2):
      s, loss_sum = runner.run(s, epoch, hp, key)
      losses.append(float(loss_sum))
    results[on_device] = (losses, runner.get(s).params)
  np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results[True][1]), jax.tree.leaves(results[False][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_index_batches_match_the_host_batches():
  split = input_pipeline.Split(np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1), np.zeros((10, 1, 1), np.int32))
  host = [b['image'].ravel().astype(int).tolist() for b in input_pipeline.train_batches(split, 3, 7, 4)]
  assert epochs.index_batches(10, 3, 7, 4).tolist() == host


def test_redraw_step_enhances_other_channels_every_step_from_the_step_counter():
  """frem.redraw='step': step i of an epoch uses frem_step_key(epoch key, i), whichever B and X, without recompiling."""
  config = tiny_config()
  data = datasets.load_dataset(config, DATA_DIR)
  state = placed_state(build.build_model(config, data.num_classes))
  batch = next(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  key = randomness.frem_epoch_key(0, 1, 'random')
  per_step, per_epoch = single_device_step(True, False, 'step'), single_device_step(True, False)
  before = per_step._cache_size()

  def at_step(fn, i, hp, frem_key):  # the same state, as if it were step i (steps donate their state)
    return fn(jax.tree.map(jax.numpy.copy, state.replace(step=jax.numpy.asarray(i, jax.numpy.int32))), batch, hp,
              frem_key)

  for hp in (steps.make_hyperparams(5, 20.0, 0.0), steps.make_hyperparams(12, 3.0, 0.0)):
    drawn = [at_step(per_step, i, hp, key) for i in (0, 1)]
    assert float(drawn[0][1]['loss']) != float(drawn[1][1]['loss'])  # two steps, two draws
    for i, (new_state, _) in enumerate(drawn):  # each the draw of its step's key, bit for bit
      expected, _ = at_step(per_epoch, i, hp, randomness.frem_step_key(key, i))
      for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
  # Under 'epoch' the step counter decides nothing.
  hp = steps.make_hyperparams(5, 20.0, 0.0)
  assert float(at_step(per_epoch, 0, hp, key)[1]['loss']) == float(at_step(per_epoch, 1, hp, key)[1]['loss'])
  channels = [np.asarray(frem.selected_channels(randomness.frem_step_key(key, i), 16, 5)) for i in (0, 1)]
  assert not np.array_equal(*channels)
  assert per_step._cache_size() - before == 1  # B and X stay runtime values


def test_frem_keys_change_every_epoch_unless_fixed():
  random = [randomness.frem_epoch_key(3, e, 'random') for e in (1, 2)]
  fixed = [randomness.frem_epoch_key(3, e, 'fixed') for e in (1, 2)]
  same = lambda a, b: np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
  assert not same(*random) and same(*fixed)
  assert same(randomness.frem_epoch_key(3, 2, 'random'), random[1])


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  return workdir, train.train_and_evaluate(tiny_config(), workdir)


def test_results_json_has_the_promised_fields(finished_run):
  workdir, results = finished_run
  with open(os.path.join(workdir, 'results.json')) as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(results))
  for key in ('config', 'best_epoch', 'num_params', 'train_seconds'):
    assert key in on_disk
  assert 1 <= on_disk['best_epoch'] <= 3
  assert set(on_disk['test']['iou_per_class']) == {'background', 'membrane', 'nucleus'}
  assert 0.0 <= on_disk['test']['miou'] <= 1.0 and 0.0 <= on_disk['val']['miou'] <= 1.0
  assert on_disk['config']['frem']['num_selected'] == 5
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = [json.loads(l) for l in f]
  assert [l['epoch'] for l in lines] == [1, 2, 3]
  assert max(l['val/miou'] for l in lines) == pytest.approx(on_disk['val']['miou'])
  # The best epoch is the earliest with the highest validation mIoU; test is its checkpoint's.
  val = [l['val/miou'] for l in lines]
  assert on_disk['best_epoch'] == 1 + val.index(max(val))
  config = tiny_config()
  model, variables = recompute.restore(workdir, config, on_disk['best_epoch'])
  test = datasets.load_dataset(config, DATA_DIR).splits['test']
  predicted = np.argmax(model.apply(variables, test.images, train=False).logits, -1)
  ious, miou = recompute.iou(test.masks, predicted, 3)
  assert on_disk['test']['miou'] == pytest.approx(miou, abs=1e-12)
  assert list(on_disk['test']['iou_per_class'].values()) == pytest.approx(ious, abs=1e-12)
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(os.path.join(workdir, 'tensorboard')))


# The paper's run, and both of issue 26's options: a new FREM draw every step (from the checkpointed
# step counter) and re-estimated statistics in the checkpoints (training resumes from its own).
RESUMED = {'paper': {}, 'step_redraw_reestimated': {'frem.redraw': 'step', 'eval.reestimate_statistics': True}}


@pytest.mark.parametrize('variant', RESUMED)
def test_resumed_run_ends_like_a_straight_run(finished_run, tmp_path, variant):
  """Interrupted after epoch 1 and resumed, a run ends as a straight one: checkpoints and logs bit for bit."""
  options = RESUMED[variant]
  if options:
    straight_dir = str(tmp_path / 'straight')
    straight = train.train_and_evaluate(tiny_config(**options), straight_dir)
  else:
    straight_dir, straight = finished_run
  workdir = str(tmp_path / 'resumed')
  train.train_and_evaluate(tiny_config(num_epochs=1, **options), workdir)  # "interrupted" after 1 epoch
  resumed = train.train_and_evaluate(tiny_config(**options), workdir)
  assert resumed['best_epoch'] == straight['best_epoch']
  assert resumed['test'] == straight['test'] and resumed['val'] == straight['val']
  epochs_kept = recompute.kept_epochs(straight_dir)
  assert recompute.kept_epochs(workdir) == epochs_kept and 3 in epochs_kept
  for epoch in epochs_kept:
    for training_statistics in {False, bool(options)}:
      recompute.assert_trees_equal(
          recompute.checkpoint_state(workdir, tiny_config(**options), epoch, training_statistics),
          recompute.checkpoint_state(straight_dir, tiny_config(**options), epoch, training_statistics))
  lines = {}
  for name, folder in (('straight', straight_dir), ('resumed', workdir)):
    with open(os.path.join(folder, 'metrics.jsonl')) as f:
      lines[name] = [json.loads(l) for l in f]
  assert lines['resumed'] == lines['straight'] and [l['epoch'] for l in lines['resumed']] == [1, 2, 3]
  # Under frem.redraw='step' no one set of channels was enhanced in an epoch: Fig. 9's split is left out.
  assert all(('features/enhanced_sum' in l) == (variant == 'paper') for l in lines['resumed'])


def test_rerunning_a_finished_run_changes_nothing(finished_run):
  workdir, results = finished_run
  again = train.train_and_evaluate(tiny_config(), workdir)
  assert again['test'] == results['test'] and again['best_epoch'] == results['best_epoch']


def test_workdir_of_another_config_is_refused_and_kept(finished_run):
  workdir, _ = finished_run
  before = {n: os.path.getmtime(os.path.join(workdir, n)) for n in os.listdir(workdir)}
  with pytest.raises(UserError, match=r'holds a run with a different config \(frem.factor: 20.0 -> 30.0\)'):
    train.train_and_evaluate(tiny_config(**{'frem.factor': 30.0}), workdir)
  assert {n: os.path.getmtime(os.path.join(workdir, n)) for n in os.listdir(workdir)} == before


def test_nonempty_folder_without_a_run_is_refused(tmp_path):
  (tmp_path / 'notes.txt').write_text('mine')
  with pytest.raises(UserError, match='is not empty and holds no config.json'):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert (tmp_path / 'notes.txt').read_text() == 'mine'


def test_nan_loss_stops_the_run_naming_the_epoch(tmp_path):
  with pytest.raises(TrainingDiverged, match='the loss is nan in epoch 1'):
    train.train_and_evaluate(tiny_config(**{'frem.factor': 1e38, 'frem.num_selected': 16}), str(tmp_path))
  assert not os.path.exists(tmp_path / 'results.json')


@pytest.mark.parametrize('lam', [0.0, 0.3257, 1.0])
def test_supervision_loss_is_the_weighted_sum(lam):
  """loss = (1 - λ) L_final + λ L_sup, with L_sup on the deepest stage's 1x1 conv resized to the input."""
  config = tiny_config(**{'supervision.enabled': True, 'frem.enabled': False})
  data = datasets.load_dataset(config, DATA_DIR)
  model = build.build_model(config, data.num_classes)
  state = steps.create_train_state(model, randomness.run_key(0), (32, 32, 1), 1e-3)
  batch = next(input_pipeline.train_batches(data.splits['train'], 4, 0, 1))
  out, _ = jax.jit(lambda s: model.apply({'params': s.params, 'batch_stats': s.batch_stats},
                                         batch['image'], train=True, mutable=['batch_stats']))(state)
  final = float(loss.cross_entropy(out.logits, batch['mask']))
  sup = float(loss.cross_entropy(out.supervision_logits, batch['mask']))
  assert abs(final - sup) > 1e-3
  train_fn = single_device_step(False, True)
  _, m = train_fn(state, batch, steps.make_hyperparams(0, 1.0, lam), randomness.frem_epoch_key(0, 1, 'random'))
  assert float(m['loss']) == pytest.approx((1 - lam) * final + lam * sup, rel=1e-5)
  assert float(m['loss_final']) == pytest.approx(final, rel=1e-5)


def test_results_are_the_earliest_best_epochs_not_the_last(tmp_path, monkeypatch):
  """Validation mIoU scripted to peak at epochs 2 and 3 (a tie) and fall at 4: results are epoch 2's."""
  scripted = iter([0.5, 0.9, 0.9, 0.3])  # the training loop's validations, in order; then real ones
  real = train.metrics.summarize

  def summarize(confusion, class_names):
    summary = real(confusion, class_names)
    value = next(scripted, None)
    return summary if value is None else {**summary, 'miou': value}

  monkeypatch.setattr(train.metrics, 'summarize', summarize)
  config = tiny_config()
  config.num_epochs = 4
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  assert results['best_epoch'] == 2
  test = datasets.load_dataset(config, DATA_DIR).splits['test']
  miou_at = {}
  for epoch in (2, 4):  # the best and the last are both kept
    model, variables = recompute.restore(workdir, config, epoch)
    predicted = np.argmax(model.apply(variables, test.images, train=False).logits, -1)
    miou_at[epoch] = recompute.iou(test.masks, predicted, 3)[1]
  assert results['test']['miou'] == pytest.approx(miou_at[2], abs=1e-12)
  assert miou_at[2] != miou_at[4]  # so the check above tells the best checkpoint from the last
