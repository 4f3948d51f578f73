"""The report generator: tables equal the runs' results.json, figures exist, missing runs are notes."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from frem_jax import report
from frem_jax.report import tables as report_tables
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
  search.run_search(tiny_config(num_epochs=1, **{'search.max_evals': 2}), dirs['search'])
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


def figure_size(path):
  """(width, height) of a PNG figure that draws something: many colours, not one blank field."""
  assert png(path)
  with Image.open(path) as im:
    pixels = np.asarray(im.convert('RGB'))
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20 and pixels.std() > 10
  return pixels.shape[1], pixels.shape[0]


def about(width_inches: float, height_inches: float, dpi: int = 110) -> tuple:
  """The pixel size of a figure of that many inches, to the pixel matplotlib's versions round to."""
  return pytest.approx((width_inches * dpi, height_inches * dpi), abs=1.0)


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

  # Table 4: baseline, FREM, fixed channels; every cell.
  rows = table_rows(md, '## Fixed channels (Table 4)')
  enhancement = ['none', '5 channels × 20, re-drawn every epoch', '3 channels × 100, fixed']
  assert len(rows) == 3
  for row, name, how in zip(rows, ('baseline', 'frem', 'fixed'), enhancement):
    test = results_of(runs[name])['test']
    assert row == ([report_tables.METHODS[name], how] + [pct(v) for v in test['iou_per_class'].values()]
                   + [pct(test['miou'])])
  assert len({tuple(r[2:]) for r in rows}) == 3  # three different runs, not one row thrice

  # Figures: drawn, with one panel per run (their sizes are panels × the panel size at 110 dpi).
  assert set(rep['figures']) == {'learning_curves', 'feature_magnitude', 'feature_sums', 'qualitative'}
  for name in rep['figures'].values():
    assert f'({name})' in md
  assert figure_size(out / 'feature_magnitude.png') == about(4.2 * 4, 3.4)  # 4 runs
  assert figure_size(out / 'feature_sums.png') == about(3.8 * 5, 3.2)  # all, 2 x (enhanced, other)
  # 2 images x (input, truth, 4 runs)
  assert figure_size(out / 'qualitative.png') == about(2.4 * 6, 2.5 * 2)

  # The search: the best of its 2 trials by validation mIoU.
  trials = json.load(open(os.path.join(runs['search'], 'trials.json')))['trials']
  assert len(trials) == 2 and trials[0]['val_miou'] != trials[1]['val_miou']
  best = max(trials, key=lambda t: t['val_miou'])
  assert rep['searches'][0]['best'] == {k: best[k] for k in ('number', 'values', 'val_miou', 'test_miou')}
  assert rep['searches'][0]['trials'] == 2 and rep['searches'][0]['ok'] == 2
  assert (f'Best trial {best["number"]}: {best["values"]}, validation mIoU {pct(best["val_miou"])} %, '
          f'test mIoU {pct(best["test_miou"])} %.') in md
  figure_size(out / rep['searches'][0]['figure'])
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
  assert 'Traceback' not in proc.stderr
  with open(tmp_path / 'out' / 'report.json') as f:
    assert [r['run'] for r in json.load(f)['table_iou']] == ['baseline', 'frem']


def test_cli_bad_input_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('x')
  cases = [(('--runs', 'frem', f'--out={tmp_path / "o"}'), "error: --runs: 'frem' is not NAME=DIR"),
           (('--runs=frem=a', '--runs=frem=b', f'--out={tmp_path / "o"}'), "error: --runs: 'frem' is given twice"),
           (('--runs=frem=a', f'--out={tmp_path / "file"}'), f'error: --out={tmp_path / "file"} is an existing file')]
  for args, message in cases:
    proc = run_cli(*args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert len([l for l in proc.stderr.splitlines() if l.startswith('error:')]) == 1
