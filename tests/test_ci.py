"""CI runs what it should: the Drosophila tests fail under CI=true when the data is missing, and skips are listed."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROSOPHILA_TEST = 'tests/datasets/test_drosophila_vnc.py::test_class_shares_over_all_20_sections'


def run_pytest(tmp_path, ci):
  env = {k: v for k, v in os.environ.items() if k != 'CI'}
  env['FREM_DROSOPHILA_DIR'] = str(tmp_path / 'no_data')
  if ci:
    env['CI'] = 'true'
  return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p', 'no:cacheprovider',
                         DROSOPHILA_TEST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_ci_script_makes_missing_data_a_failure():
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    lines = [l.strip() for l in f]
  assert 'export CI=true' in lines
  assert lines.index('export CI=true') < next(i for i, l in enumerate(lines) if 'pytest' in l and not l.startswith('#'))


def test_missing_drosophila_data_fails_under_ci_and_skips_with_its_reason_otherwise(tmp_path):
  failed = run_pytest(tmp_path, ci=True)
  assert failed.returncode == 1, failed.stdout
  assert f'the Drosophila data is missing at {tmp_path / "no_data"}' in failed.stdout
  assert '1 failed' in failed.stdout.splitlines()[-1]
  skipped = run_pytest(tmp_path, ci=False)
  assert skipped.returncode == 0, skipped.stdout
  # The short summary (-ra, from pyproject's addopts) names the skip and its reason; the last line counts it.
  assert f'SKIPPED [1] {DROSOPHILA_TEST.split("::")[0]}' in skipped.stdout
  assert f'no Drosophila data at {tmp_path / "no_data"}' in skipped.stdout
  assert '1 skipped' in skipped.stdout.splitlines()[-1]
