"""The successive-halving scheduler on made-up learning curves: who stops, who goes on, at which epoch."""

import json
import random
import time

import pytest

from configs import default
from frem_jax.search import asha
from frem_jax.search import halving as search_halving
from frem_jax.search import store as search_store

C, S, F = asha.CONTINUE, asha.STOP, asha.FINISH


def test_rungs_are_min_epochs_times_powers_of_eta_then_num_epochs():
  assert asha.rung_epochs(1, 3, 9) == (1, 3, 9)
  assert asha.rung_epochs(1, 3, 10) == (1, 3, 10)  # 9 is above 10 / 3
  assert asha.rung_epochs(2, 2, 16) == (2, 4, 8, 16)
  assert asha.rung_epochs(5, 3, 5) == (5,)  # one rung: every trial trains num_epochs
  assert asha.default_min_epochs(2000, 3) == 24
  assert asha.rung_epochs(24, 3, 2000) == (24, 72, 216, 648, 2000)  # not 1944: a step trains >= η times longer
  assert asha.rung_epochs(5, 3, 9) == (5, 9)  # the first rung is min_epochs, whatever follows
  assert asha.default_min_epochs(40, 3) == 1
  assert asha.Asha(1, 3, 10).next_rung(0) == 1 and asha.Asha(1, 3, 10).next_rung(3) == 10


# Validation mIoU after epochs 1..9; rungs at 1, 3, 9 (η = 3). A trial's score at a rung is the best so far.
CURVES = {
    0: [.50, .60, .70, .72, .72, .73, .74, .75, .75],
    1: [.40, .45, .50],
    2: [.60, .65, .50],  # its best by epoch 3 is epoch 2's .65, not the last .50
    3: [.55, .70, .72, .75, .78, .79, .80, .80, .79],
    4: [.30],
    5: [.20],
    6: [.58, .66, .61],
}


def test_one_worker_sweep_stops_and_promotes_exactly_by_rank():
  events = asha.simulate(asha.Asha(1, 3, 9), CURVES, max_evals=7)
  assert events == [
      (0, 1, .50, C),  # alone at rung 1: the best of fewer than η results goes on
      (0, 3, .70, C),
      (0, 9, .75, F),
      (1, 1, .40, S),  # 2 results, 1 may go on, and .50 is better
      (2, 1, .60, C),  # 3 results: floor(3/3) = 1 goes on: the best, .60
      (2, 3, .65, S),  # rung 3 holds .70
      (3, 1, .55, S),  # 4 results, 1 goes on; .60 is better
      (4, 1, .30, S),
      (5, 1, .20, S),  # 6 results: now 2 may go on, and .55 is the second ...
      (3, 3, .72, C),  # ... so trial 3 is promoted before a new trial starts, from its own epoch 1
      (3, 9, .80, F),
      (6, 1, .58, C),  # 7 results, 2 go on: .58 is second to .60
      (6, 3, .66, S),  # rung 3 holds .70 and .72 above it; 4 results, 1 goes on
  ]


def test_ties_go_on_together():
  s = asha.Asha(1, 2, 4)  # rungs 1, 2, 4
  assert s.report(0, 1, .5) == C
  assert s.report(1, 1, .5) == C  # as good as the best: no result is strictly better
  assert s.report(2, 1, .4) == S
  assert s.report(3, 1, .5) == C  # 4 results, 2 go on; none beats .5
  assert s.report(4, 1, .45) == S  # 5 results, 2 go on; three .5 beat it
  assert s.promotion() is None
  assert s.report(5, 1, .1) == S  # 6 results, 3 go on: trial 4 has 3 better, still not
  assert s.promotion() is None
  assert s.report(6, 1, .1) == S
  assert s.report(7, 1, .1) == S  # 8 results, 4 go on: trial 4 (3 better) now may
  assert s.promotion() == (4, 2)
  assert s.promotion() is None  # promoted once only


def test_a_rung_below_eta_results_lets_only_its_best_go_on():
  s = asha.Asha(2, 4, 32)  # rungs 2, 8, 32
  assert s.report(0, 2, .3) == C
  assert s.report(1, 2, .2) == S
  assert s.report(2, 2, .4) == C  # better than all before
  assert s.report(3, 2, .35) == S  # 4 results, 1 goes on
  assert [s.report(t, 2, .1) for t in (4, 5, 6)] == [S, S, S]
  assert s.report(7, 2, .05) == S  # 8 results: 2 go on ...
  assert s.promotion() == (3, 8)  # ... and .35, second best, was paused: promoted now
  assert s.report(3, 8, .5) == C
  assert s.report(2, 8, .45) == S  # reports from rung 8 in any order
  assert s.promotion() is None


def test_promotion_prefers_the_highest_rung_then_the_best_score_then_the_lowest_number():
  s = asha.Asha(1, 2, 8)  # rungs 1, 2, 4, 8
  assert [s.report(t, 1, score) for t, score in enumerate([.9, .8, .7, .6])] == [C, S, S, S]
  assert s.report(0, 2, .5) == C
  assert [s.report(t, 1, .1) for t in (4, 5)] == [S, S]  # 6 results at rung 1, 3 may go on
  assert s.promotion() == (1, 2)  # .8 and .7 became promotable: the better first
  assert s.report(1, 2, .4) == S
  assert s.promotion() == (2, 2)
  assert s.report(2, 2, .45) == S
  assert s.report(6, 1, .65) == S
  assert s.report(7, 1, .0) == S  # 8 results, 4 go on: .65 is fourth
  assert s.promotion() == (6, 2)
  assert s.report(6, 2, .3) == S  # 4 results at rung 2, 2 go on: .45 is second
  assert [s.report(t, 1, .0) for t in (8, 9)] == [S, S]  # 10 results at rung 1, 5 go on: .6 is fifth
  assert s.promotion() == (2, 4)  # the higher rung first, though .45 < .6
  assert s.promotion() == (3, 2)
  assert s.promotion() is None


def test_tied_promotable_trials_go_in_number_order():
  s = asha.Asha(1, 2, 4)
  assert [s.report(t, 1, score) for t, score in enumerate([.5, .4, .4, .0])] == [C, S, S, S]
  assert s.promotion() == (1, 2)
  assert s.promotion() == (2, 2)
  assert s.promotion() is None


# Trial 1 fails in epoch 2 after going on from epoch 1; trial 3 fails in its first epoch.
FAILING_CURVES = {0: [.5, .6, .6, .7], 1: [.8, None], 2: [.7, .9, .9, .9], 3: [None]}


def test_failed_trials_keep_the_results_they_recorded_and_are_never_promoted():
  s = asha.Asha(1, 2, 4)  # rungs 1, 2, 4
  events = asha.simulate(s, FAILING_CURVES, max_evals=4)
  assert events == [
      (0, 1, .5, C), (0, 2, .6, C), (0, 4, .7, F),
      (1, 1, .8, C), (1, 2, None, 'fail'),
      (2, 1, .7, S),  # trial 1's .8 still counts at rung 1: 3 results, 1 goes on
      (3, 1, None, 'fail'),  # records nothing
  ]
  assert s.state()['scores'][0] == {0: .5, 1: .8, 2: .7}
  assert s.state()['failed'] == [1, 3]
  s.report(9, 1, .1)
  s.report(10, 1, .1)  # 6 results at rung 1 (2 go on): trial 2 (.7) has 1 better -> promotable
  assert s.promotion() == (2, 2)
  assert s.promotion() is None


def test_a_score_is_recorded_once_and_must_be_finite():
  s = asha.Asha(1, 3, 9)
  s.report(0, 1, .5)
  with pytest.raises(ValueError, match='trial 0 was already recorded at rung 0'):
    s.report(0, 1, .6)
  with pytest.raises(ValueError, match='score nan'):
    s.report(1, 1, float('nan'))
  with pytest.raises(ValueError, match='no rungs for min_epochs=4'):
    asha.rung_epochs(4, 3, 3)


# --- The sweep driver (search_halving) over the same made-up curves, without training anything. ---


class Interrupted(Exception):
  pass


def fake_run_trial(curves, stop_after=None):
  """search._run_trial's stand-in: the trial's best score so far, or a failure; counts its calls."""
  calls = []

  def run_trial(config, entry, device):
    if stop_after is not None and len(calls) == stop_after:
      raise Interrupted  # the sweep is killed while this rung trains
    calls.append((entry['number'], config.num_epochs))
    curve = curves[entry['number']][:config.num_epochs]
    ok = len(curve) == config.num_epochs and None not in curve
    return {'status': 'ok' if ok else 'fail', 'reason': None if ok else 'TrainingDiverged: made up',
            'val_miou': max(curve) if ok else None, 'best_epoch': None, 'test_miou': None,
            'test_iou_per_class': None, 'device': str(device), 'wall_seconds': 1.0}
  run_trial.calls = calls
  return run_trial


def fake_ask(number):
  return {'number': number, 'values': {'num_selected': number + 1, 'factor': 1.0}, 'status': 'running',
          'reason': None, 'val_miou': None, 'best_epoch': None, 'test_miou': None,
          'test_iou_per_class': None, 'wall_seconds': None, 'device': None, 'workdir': f'trial_{number:03d}'}


def halving_config(min_epochs=1, eta=3, num_epochs=9):
  config = default.get_config()
  config.num_epochs = num_epochs
  config.search.halving = True
  config.search.min_epochs = min_epochs
  config.search.reduction_factor = eta
  return config


def drive(workdir, config, curves, max_evals, record=None, stop_after=None, told=None):
  record = record or {'format': search_store.FORMAT, 'space': {}, 'config': {}, 'trials': []}
  run_trial = fake_run_trial(curves, stop_after)
  told = [] if told is None else told
  search_halving.run_sweep(config, record, str(workdir), ['dev0'], max_evals, run_trial, fake_ask,
                           lambda e: told.append((e['number'], search_store.loss(e))))
  return record, run_trial.calls


def test_the_sweep_driver_follows_the_scheduler_and_records_each_trial(tmp_path):
  told = []
  record, calls = drive(tmp_path, halving_config(), CURVES, 7, told=told)
  events = asha.simulate(asha.Asha(1, 3, 9), CURVES, max_evals=7)
  assert calls == [(t, e) for t, e, _, _ in events]  # each rung trained once, in the scheduler's order
  by = {t['number']: t for t in record['trials']}
  assert [t['number'] for t in record['trials']] == list(range(7))
  assert {n: (t['status'], t['epochs'], t['rung_scores']) for n, t in by.items()} == {
      0: ('ok', 9, [.50, .70, .75]), 1: ('stopped', 1, [.40]), 2: ('stopped', 3, [.60, .65]),
      3: ('ok', 9, [.55, .72, .80]), 4: ('stopped', 1, [.30]), 5: ('stopped', 1, [.20]),
      6: ('stopped', 3, [.58, .66])}
  assert by[2]['val_miou'] == .65 and by[3]['val_miou'] == .80  # the score at the epoch reached
  assert by[3]['wall_seconds'] == 3.0  # summed over its three rungs
  assert record['halving'] == {'min_epochs': 1, 'reduction_factor': 3, 'rungs': [1, 3, 9]}
  # TPE is told every rung's score as the trial's loss (a stopped trial keeps its last one).
  assert told[:4] == [(0, -.50), (0, -.70), (0, -.75), (1, -.40)]
  assert {n: -t['rung_scores'][-1] for n, t in by.items()} == {n: search_store.loss(t) for n, t in by.items()}
  with open(tmp_path / 'trials.json') as f:
    assert json.load(f) == record
  with open(tmp_path / 'best.json') as f:
    assert json.load(f)['number'] == 3
  # The scheduler rebuilt from trials.json is the live one.
  live = asha.Asha(1, 3, 9)
  asha.simulate(live, CURVES, max_evals=7)
  assert search_halving.scheduler(halving_config(), record['trials']).state() == live.state()


def test_the_sweep_driver_records_failures(tmp_path):
  record, calls = drive(tmp_path, halving_config(1, 2, 4), FAILING_CURVES, 4)
  by = {t['number']: t for t in record['trials']}
  assert {n: (t['status'], t['epochs'], t['rung_scores']) for n, t in by.items()} == {
      0: ('ok', 4, [.5, .6, .7]), 1: ('fail', 1, [.8]), 2: ('stopped', 1, [.7]), 3: ('fail', 0, [])}
  assert by[1]['reason'] == 'TrainingDiverged: made up' and by[1]['val_miou'] is None
  assert search_store.loss(by[1]) is None
  assert calls == [(0, 1), (0, 2), (0, 4), (1, 1), (1, 2), (2, 1), (3, 1)]


# Killed while training: the first rung, a trial's last rung, a new trial, a promoted trial's rung, the last one.
@pytest.mark.parametrize('stop_after', [0, 2, 3, 9, 10, 12])
def test_a_sweep_killed_at_any_rung_resumes_to_the_same_decisions(tmp_path, stop_after):
  full, full_calls = drive(tmp_path / 'full', halving_config(), CURVES, 7)
  with pytest.raises(Interrupted):
    drive(tmp_path / 'cut', halving_config(), CURVES, 7, stop_after=stop_after)
  saved = search_store.load(str(tmp_path / 'cut'))
  resumed, resumed_calls = drive(tmp_path / 'cut', halving_config(), CURVES, 7, record=saved)
  assert resumed['trials'] == full['trials']
  assert full_calls[stop_after:] == resumed_calls  # nothing finished is trained again


def test_with_several_devices_every_rung_is_trained_once_and_nothing_promotable_is_left(tmp_path):
  rng = random.Random(0)
  curves = {n: [round(rng.random(), 2) for _ in range(9)] for n in range(30)}
  run_trial = fake_run_trial(curves)

  def slow_run_trial(config, entry, device):
    time.sleep(rng.random() / 200)  # completions in a shuffled order
    return run_trial(config, entry, device)
  record = {'format': search_store.FORMAT, 'space': {}, 'config': {}, 'trials': []}
  search_halving.run_sweep(halving_config(), record, str(tmp_path), ['d0', 'd1', 'd2'], 30, slow_run_trial,
                           fake_ask, lambda e: None)
  assert len(run_trial.calls) == len(set(run_trial.calls))
  assert [t['number'] for t in record['trials']] == list(range(30))
  for t in record['trials']:
    rungs = [1, 3, 9][:len(t['rung_scores'])]
    assert t['rung_scores'] == [max(curves[t['number']][:r]) for r in rungs]
    assert t['status'] == ('ok' if t['epochs'] == 9 else 'stopped')
  assert search_halving.scheduler(halving_config(), record['trials']).promotion() is None
  assert sum(t['status'] == 'ok' for t in record['trials']) >= 3  # 30 results at rung 1 -> >= 10 at rung 3 -> >= 3 at rung 9
