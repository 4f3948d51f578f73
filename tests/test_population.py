"""Population training: K runs in one vmapped step give each member its single run; the sweep's search.population."""

import json
import os

import jax
import numpy as np
import pytest

from frem_jax import search
from frem_jax import train
from frem_jax.errors import UserError
from tests import recompute
from tests.tiny import tiny_config

# vmap batches each op over the members, so XLA may sum in another order and fuse differently:
# float32 rounding (~1e-7 relative per op) that the steps can grow, X = 20 most. Measured here:
# at most 1.1e-7 relative over the 2 epochs (one float32 ulp, most values bit-equal); bound 100x that.
LOSS_RTOL = 1e-5
# mIoU counts pixels from an argmax: a logit difference of rounding size can flip a near-tie pixel
# (one pixel of the 4 validation images of 32² moves an IoU by ~1e-3).
MIOU_ATOL = 5e-3


def read_json(path):
  with open(path) as f:
    return json.load(f)


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


# Member values (B, X): FREM as configured, B=0 (FREM is then the identity: the baseline), and 12 of
# the 16 channels at a small X. Members after the first with a real draw (0 < B < C) check that
# each member enhances its single run's channels.
MEMBERS = [(5, 20.0), (0, 20.0), (12, 3.0)]


def member_config(b, x, **overrides):
  return tiny_config(**{'num_epochs': 2, 'frem.num_selected': b, 'frem.factor': x, **overrides})


@pytest.fixture(scope='module')
def population_and_single_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('population')
  dirs = [str(root / f'member_{i}') for i in range(len(MEMBERS))]
  outcomes = train.train_population([member_config(b, x) for b, x in MEMBERS], dirs)
  singles = [train.train_and_evaluate(member_config(b, x), str(root / f'single_{i}'))
             for i, (b, x) in enumerate(MEMBERS)]
  baseline = train.train_and_evaluate(member_config(5, 20.0, **{'frem.enabled': False}),
                                      str(root / 'baseline'))
  return root, outcomes, singles, baseline


def test_each_member_matches_its_single_run(population_and_single_runs):
  root, outcomes, singles, _ = population_and_single_runs
  for i, (outcome, single) in enumerate(zip(outcomes, singles)):
    member_dir, single_dir = root / f'member_{i}', root / f'single_{i}'
    assert read_json(member_dir / 'results.json') == outcome
    assert read_json(member_dir / 'config.json') == read_json(single_dir / 'config.json')
    got, want = read_jsonl(member_dir / 'metrics.jsonl'), read_jsonl(single_dir / 'metrics.jsonl')
    assert [m['epoch'] for m in got] == [m['epoch'] for m in want] == [1, 2]
    for g, w in zip(got, want):
      assert g.keys() == w.keys()
      np.testing.assert_allclose(g['train/loss'], w['train/loss'], rtol=LOSS_RTOL)
      np.testing.assert_allclose(g['val/miou'], w['val/miou'], atol=MIOU_ATOL)
    assert outcome['best_epoch'] == single['best_epoch']
    for split in ('val', 'test'):
      np.testing.assert_allclose(outcome[split]['miou'], single[split]['miou'], atol=MIOU_ATOL)
    assert outcome['num_params'] == single['num_params']
    assert sorted(os.listdir(member_dir / 'checkpoints')) == sorted(os.listdir(single_dir / 'checkpoints'))


def test_members_train_with_their_own_b_and_x(population_and_single_runs):
  root, outcomes, _, baseline = population_and_single_runs
  losses = [[m['train/loss'] for m in read_jsonl(root / f'member_{i}' / 'metrics.jsonl')]
            for i in range(len(MEMBERS))]
  baseline_losses = [m['train/loss'] for m in read_jsonl(root / 'baseline' / 'metrics.jsonl')]
  # B=0 enhances nothing: that member is the baseline (FREM off) ...
  np.testing.assert_allclose(losses[1], baseline_losses, rtol=LOSS_RTOL)
  # ... while its neighbours, in the same steps, are not: their own B and X act on them.
  # (Measured: 4.1e-3 and 1.5e-3 relative, 410x and 150x the tolerance; 2.6e-3 between them.)
  for i in (0, 2):
    assert np.max(np.abs(np.array(losses[i]) / np.array(baseline_losses) - 1)) > 50 * LOSS_RTOL
  assert np.max(np.abs(np.array(losses[0]) / np.array(losses[2]) - 1)) > 50 * LOSS_RTOL
  np.testing.assert_allclose(outcomes[1]['val']['miou'], baseline['val']['miou'], atol=MIOU_ATOL)


def test_members_with_step_redraws_and_reestimated_statistics_match_their_single_runs(tmp_path):
  """frem.redraw='step' (each member folds in its step counter) and eval.reestimate_statistics (vmapped)."""
  options = {'frem.redraw': 'step', 'eval.reestimate_statistics': True}
  members = [(5, 20.0), (12, 3.0)]
  dirs = [str(tmp_path / f'member_{i}') for i in range(len(members))]
  outcomes = train.train_population([member_config(b, x, **options) for b, x in members], dirs)
  for i, (b, x) in enumerate(members):
    config = member_config(b, x, **options)
    single = train.train_and_evaluate(config, str(tmp_path / f'single_{i}'))
    got, want = read_jsonl(os.path.join(dirs[i], 'metrics.jsonl')), read_jsonl(tmp_path / f'single_{i}' / 'metrics.jsonl')
    np.testing.assert_allclose([m['train/loss'] for m in got], [m['train/loss'] for m in want], rtol=LOSS_RTOL)
    np.testing.assert_allclose([m['val/miou'] for m in got], [m['val/miou'] for m in want], atol=MIOU_ATOL)
    assert outcomes[i]['best_epoch'] == single['best_epoch']
    np.testing.assert_allclose(outcomes[i]['test']['miou'], single['test']['miou'], atol=MIOU_ATOL)
    for training_statistics in (False, True):  # the checkpoint's re-estimated statistics, and the training ones
      member = recompute.checkpoint_state(dirs[i], config, 2, training_statistics).batch_stats
      alone = recompute.checkpoint_state(str(tmp_path / f'single_{i}'), config, 2, training_statistics).batch_stats
      # To 1e-4 of each leaf's largest entry: the vmapped re-estimation sums its batches' moments in
      # another order, and an entry near 0 then differs by more than 1e-4 of itself. Measured at widths
      # (8, 16), 2026-12-07: at most 1.1e-5 of the leaf's largest entry (7e-6 absolute, the member with
      # B = 12, X = 3; 1.3e-4 of that entry itself); the training statistics to 1.7e-6.
      for m, s in zip(jax.tree.leaves(member), jax.tree.leaves(alone)):
        assert np.max(np.abs(m - s)) <= 1e-4 * np.max(np.abs(s)), (np.max(np.abs(m - s)), np.max(np.abs(s)))


def test_members_must_differ_only_in_b_x_and_lambda(tmp_path):
  with pytest.raises(UserError) as e:
    train.train_population([member_config(5, 20.0), member_config(5, 20.0, learning_rate=0.01)],
                                [str(tmp_path / 'a'), str(tmp_path / 'b')])
  assert str(e.value) == ('population member 1 differs from member 0 in learning_rate (0.001 -> 0.01); '
                          'members may differ only in frem.num_selected, frem.factor, supervision.weight')
  assert not os.path.exists(tmp_path / 'a')


def test_sweep_with_population_trains_trials_together(tmp_path):
  config = tiny_config(**{'num_epochs': 1, 'search.max_evals': 3, 'search.population': 2})
  record = search.run_search(config, str(tmp_path))
  trials = record['trials']
  assert [t['number'] for t in trials] == [0, 1, 2]
  # Two at a time: trials 0 and 1 together, then trial 2 (the remainder) alone.
  assert trials[0]['wall_seconds'] == trials[1]['wall_seconds'] != trials[2]['wall_seconds']
  for t in trials:
    assert t['status'] == 'ok'
    run = read_json(tmp_path / t['workdir'] / 'results.json')
    assert run['config']['frem']['num_selected'] == t['values']['num_selected']
    assert run['config']['frem']['factor'] == t['values']['factor']
    assert t['val_miou'] == run['val']['miou'] and t['test_miou'] == run['test']['miou']
  assert len({(t['values']['num_selected'], t['values']['factor']) for t in trials}) == 3
  assert read_json(tmp_path / 'best.json')['val_miou'] == max(t['val_miou'] for t in trials)


def test_diverging_member_fails_alone(tmp_path):
  configs = [member_config(5, 20.0, num_epochs=1), member_config(16, 3e38, num_epochs=1)]
  outcomes = train.train_population(configs, [str(tmp_path / 'ok'), str(tmp_path / 'nan')])
  assert outcomes[0]['epochs_completed'] == 1 and os.path.exists(tmp_path / 'ok' / 'results.json')
  assert str(outcomes[1]).startswith('training diverged: the loss is nan in epoch 1 (frem.factor=3e+38')
  assert not os.path.exists(tmp_path / 'nan' / 'results.json')


@pytest.mark.parametrize('population_size,halving,message', [
    (0, None, 'search.population=0 must be an integer >= 1 (1 = one trial at a time)'),
    (-2, None, 'search.population=-2 must be an integer >= 1'),
    (2, True, 'search.population=2 and search.halving cannot be combined'),
])
def test_bad_population_is_refused_before_anything_is_written(population_size, halving, message, tmp_path):
  config = tiny_config(**{'search.max_evals': 2})
  with config.unlocked():
    config.search.population = population_size
    if halving is not None:  # search.halving comes with successive halving (issue 13, part 1)
      config.search.halving = halving
  with pytest.raises(UserError) as e:
    search.run_search(config, str(tmp_path / 'sweep'))
  assert message in str(e.value)
  assert not os.path.exists(tmp_path / 'sweep')
