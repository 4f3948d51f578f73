"""launch/halving_study.py: its commands, and the numbers it reads from the sweeps' trials.json."""

import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'launch', 'halving_study.py')
spec = importlib.util.spec_from_file_location('halving_study', SCRIPT)
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def trial(number, status, val, epochs=None):
  t = {'number': number, 'status': status, 'val_miou': val, 'values': {'num_selected': number + 1},
       'wall_seconds': 2.0}
  if epochs is not None:
    t['epochs'] = epochs
  return t


PLAIN = {'trials': [trial(0, 'ok', .50), trial(1, 'fail', None), trial(2, 'ok', .60)]}
HALVING = {'trials': [trial(0, 'ok', .55, 9), trial(1, 'stopped', .40, 1), trial(2, 'stopped', .58, 3)],
           'halving': {'rungs': [1, 3, 9]}}


def test_best_of_the_trials_trained_to_the_end_against_epochs_spent():
  s = study.sweep_summary(PLAIN, 9)
  assert s['best_val_miou'] == .60 and s['best_values'] == {'num_selected': 3}
  assert s['epochs_spent'] == 27 and s['curve'] == [[9, .50], [18, .50], [27, .60]]
  assert (s['trained_to_the_end'], s['stopped'], s['failed'], s['wall_seconds']) == (2, 0, 1, 6.0)
  h = study.sweep_summary(HALVING, 9)
  assert h['best_val_miou'] == .55  # a stopped trial's .58 was measured at 3 epochs: not a result
  assert h['epochs_spent'] == 13 and h['curve'] == [[9, .55], [10, .55], [13, .55]]


def test_study_json_compares_the_modes_per_seed(tmp_path):
  for name, record in (('plain_seed0', PLAIN), ('halving_seed0', HALVING), ('plain_seed1', PLAIN)):
    os.makedirs(tmp_path / name)
    (tmp_path / name / 'trials.json').write_text(json.dumps(record))
  result = study.summarize(str(tmp_path), [0, 1], 9)
  row0, row1 = result['per_seed']
  assert row0['miou_points_below_plain'] == 100 * (.60 - .55)
  assert row0['epochs_fraction_of_plain'] == 13 / 27
  assert row0['meets_target'] is False  # 5 points below, and more than a third of the epochs
  assert row1 == {'seed': 1, 'plain': {'best_val_miou': .60, 'epochs_spent': 27}}  # its halving sweep is missing
  assert study.table(result).splitlines()[2:] == [
      '| 0 | 60.00 | 27 | 55.00 | 13 | 5.00 | 0.48 | False |',
      '| 1 | 60.00 | 27 | n/a | n/a | n/a | n/a | n/a |']
  study.plot(result, str(tmp_path / 'halving_study.png'))
  assert (tmp_path / 'halving_study.png').read_bytes()[:4] == b'\x89PNG'


def test_dry_run_prints_one_sweep_per_mode_and_seed_and_runs_nothing(tmp_path):
  proc = subprocess.run([sys.executable, SCRIPT, f'--out={tmp_path / "s"}', '--seeds=3,4', '--max_evals=6',
                         '--num_epochs=9', '--dry-run', '--', '--config.search.n_startup_jobs=2'],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  lines = [l[2:] for l in proc.stdout.splitlines() if l.startswith('+ ')]
  assert len(lines) == 4
  assert lines[1] == (f'{sys.executable} -m frem_jax.search --config=configs/demo.py --workdir={tmp_path / "s"}/halving_seed3 '
                      '--config.search.seed=3 --config.search.max_evals=6 --config.num_epochs=9 '
                      '--config.search.halving=True --config.search.min_epochs=1 --config.search.reduction_factor=3 '
                      '--config.search.n_startup_jobs=2')
  assert not (tmp_path / 's').exists()
  bad = subprocess.run([sys.executable, SCRIPT, f'--out={tmp_path}', '--dry-run', '--', '--seed=3'],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and 'unknown argument --seed=3 (after --, only --config.KEY=VALUE)' in bad.stderr
