"""The report generator: tables equal the runs' results.json, figures exist, missing runs are notes."""

import json
import os
import subprocess
import sys

import pytest

from frem_jax import report
from frem_jax import search
from frem_jax import train
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

RUN_OVERRIDES = {
    'baseline': {'frem.enabled': False},
    'supervision': {'frem.enabled': False, 'supervision.enabled': True, 'supervision.weight': 0.3},
    'frem': {'eval.frem_at_test': True},
    'fixed': {'frem.mode': 'fixed', 'frem.num_selected': 3, 'frem.factor': 100.0},
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('report_runs')
  dirs = {}
  for name, overrides in RUN_OVERRIDES.items():
    dirs[name] = str(root / name)
    train.train_and_evaluate(tiny_config(num_epochs=2, **overrides), dirs[name])
  dirs['search'] = str(root / 'search')
  search.run_search(tiny_config(num_epochs=1, **{'search.max_evals': 1}), dirs['search'])
  return dirs


def results_of(path):
  with open(os.path.join(path, 'results.json')) as f:
    return json.load(f)


def table_rows(markdown: str, heading: str) -> list:
  """The data rows (lists of cells) of the first table after `heading`."""
  table = []
  for line in markdown.split(heading, 1)[1].splitlines():
    if line.startswith('|'):
      table.append([c.strip() for c in line.strip('|').split('|')])
    elif table:
      break
  return table[2:]  # without the header and the |---| line


def pct(x):
  return f'{100 * x:.2f}'


def png(path):
  with open(path, 'rb') as f:
    return f.read(8) == PNG_MAGIC


def test_report_tables_equal_the_runs_results(runs, tmp_path):
  out = tmp_path / 'report'
  rep = report.write_report({n: runs[n] for n in RUN_OVERRIDES}, [runs['search']], str(out), num_images=2)
  md = (out / 'report.md').read_text()
  with open(out / 'report.json') as f:
    assert json.load(f) == json.loads(json.dumps(rep))

  # Tables 2/3: one row per method, per-class IoU then mIoU, in %.
  rows = table_rows(md, "## Per-class test IoU (the paper's Tables 2/3)")
  assert len(rows) == 3
  for row, name in zip(rows, ('baseline', 'supervision', 'frem')):
    test = results_of(runs[name])['test']
    expected = [pct(v) if v is not None else '–' for v in test['iou_per_class'].values()] + [pct(test['miou'])]
    assert row[1:] == expected
  assert [r['miou'] for r in rep['table_iou']] == [results_of(runs[n])['test']['miou']
                                                   for n in ('baseline', 'supervision', 'frem')]

  # Table 1: baseline, FREM with and without the enhancement at test.
  frem = results_of(runs['frem'])
  rows = table_rows(md, '## Enhancement at test time (Table 1)')
  assert [r[1] for r in rows] == [pct(results_of(runs['baseline'])['test']['miou']),
                                  pct(frem['frem_at_test']['test']['miou']), pct(frem['test']['miou'])]
  assert rep['table1']['frem_enhanced_at_test'] == frem['frem_at_test']['test']['miou']

  # Table 4: baseline, FREM, fixed channels.
  rows = table_rows(md, '## Fixed channels (Table 4)')
  assert [r[1] for r in rows] == ['none', '5 channels × 20, re-drawn every epoch', '3 channels × 100, fixed']
  assert rows[2][-1] == pct(results_of(runs['fixed'])['test']['miou'])

  assert set(rep['figures']) == {'learning_curves', 'feature_magnitude', 'feature_sums', 'qualitative'}
  for name in rep['figures'].values():
    assert png(out / name) and f'({name})' in md
  search_record = json.load(open(os.path.join(runs['search'], 'trials.json')))
  assert rep['searches'][0]['best']['val_miou'] == search_record['trials'][0]['val_miou']
  assert png(out / rep['searches'][0]['figure'])
  assert rep['notes'] == []


def test_missing_runs_are_left_out_with_a_note(runs, tmp_path):
  out = tmp_path / 'partial'
  rep = report.write_report({'frem': runs['frem'], 'baseline': str(tmp_path / 'not_trained')}, [],
                            str(out), num_images=1)
  assert [r['run'] for r in rep['table_iou']] == ['frem']
  notes = ' '.join(rep['notes'])
  assert f"run 'baseline': {tmp_path / 'not_trained' / 'results.json'} does not exist" in notes
  assert "no 'supervision' run was given" in notes and 'Table 4 left out' in notes
  md = (out / 'report.md').read_text()
  assert '## Notes' in md and 'not_trained' in md
  assert rep['table1']['baseline'] is None


def run_cli(*args):
  return subprocess.run([sys.executable, '-m', 'frem_jax.report', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_cli_takes_runs_as_space_separated_pairs(runs, tmp_path):
  proc = run_cli('--runs', f'baseline={runs["baseline"]}', f'frem={runs["frem"]}',
                 f'--out={tmp_path / "out"}', '--num_images=1')
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / 'out' / 'report.json') as f:
    assert [r['run'] for r in json.load(f)['table_iou']] == ['baseline', 'frem']


def test_cli_bad_input_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('x')
  proc = run_cli('--runs', 'frem', f'--out={tmp_path / "o"}')
  assert proc.returncode == 1 and "error: --runs: 'frem' is not NAME=DIR" in proc.stderr
  proc = run_cli('--runs=frem=a', '--runs=frem=b', f'--out={tmp_path / "o"}')
  assert proc.returncode == 1 and "error: --runs: 'frem' is given twice" in proc.stderr
  proc = run_cli('--runs=frem=a', f'--out={tmp_path / "file"}')
  assert proc.returncode == 1 and f'error: --out={tmp_path / "file"} is an existing file' in proc.stderr
  for p in (proc,):
    assert 'Traceback' not in p.stderr
