"""launch/pilot_curve.py: the epoch where a pilot's best validation mIoU levels off (the study's --epochs)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'launch', 'pilot_curve.py')
spec = importlib.util.spec_from_file_location('pilot_curve', SCRIPT)
pilot_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pilot_curve)


CURVE = [0.50 + 0.01 * i for i in range(20)] + [0.60, 0.693, 0.65, 0.65, 0.65, 0.65]


def test_levels_off_where_the_best_gained_under_half_a_point_over_the_last_fifth():
  # +1 point per epoch up to epoch 20 (69 %), a dip, a last best of 69.3 % at epoch 22, then lower.
  values = CURVE
  # The best so far gained, over the window from epoch floor(0.8 E) to E: E = 24: 68 -> 69.3 %,
  # +1.3 points; E = 25: 69 -> 69.3 %, +0.3; E = 26: the same window start, +0.3.
  assert pilot_curve.levelled_off_at(values) == 25
  assert pilot_curve.levelled_off_at(values, points=1.5) == 24
  assert pilot_curve.levelled_off_at(values, points=0.2) is None
  assert pilot_curve.levelled_off_at(values[:24]) is None


def test_a_curve_that_keeps_rising_never_levels_off():
  assert pilot_curve.levelled_off_at([0.3 + 0.006 * i for i in range(60)]) is None


def test_an_early_dip_is_not_levelling_off():
  # Epochs 3 and 4 gain nothing over their one-epoch windows, but the curve rises again after.
  values = [0.30, 0.40, 0.39, 0.39] + [0.40 + 0.01 * i for i in range(1, 21)] + [0.60] * 10
  assert pilot_curve.gains(values)[2:4] == [0.0, 0.0]
  assert pilot_curve.levelled_off_at(values) == 30  # the window of epoch 29 starts at 23 (59 %)


def test_best_so_far_is_the_running_maximum():
  assert pilot_curve.best_so_far([0.3, 0.5, 0.4, 0.6, 0.2]) == [0.3, 0.5, 0.5, 0.6, 0.6]


def run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_the_epoch_and_draws_the_figure(tmp_path):
  values = CURVE
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    for epoch, v in enumerate(values, 1):
      f.write(json.dumps({'epoch': epoch, 'train/loss': 1.0, 'val/miou': v}) + '\n')
  proc = run(str(tmp_path), f'--out={tmp_path / "curve.png"}')
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  assert out['levelled_off_at'] == 25 and out['epochs'] == 26 and out['best_so_far'][-1] == 0.693
  with open(tmp_path / 'curve.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('content,message', [
    (None, 'metrics.jsonl does not exist; give the folder of a training run'),
    ([{'epoch': 2, 'val/miou': 0.5}], 'does not have a validation mIoU for every epoch from 1'),
])
def test_cli_bad_input_is_one_line(tmp_path, content, message):
  if content is not None:
    with open(tmp_path / 'metrics.jsonl', 'w') as f:
      f.write(''.join(json.dumps(r) + '\n' for r in content))
  proc = run(str(tmp_path))
  assert proc.returncode == 1 and message in proc.stderr
  assert 'Traceback' not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
