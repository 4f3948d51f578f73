"""The paper's tables and figures from finished runs and searches: OUT/report.md, OUT/report.json, PNGs.

Usage (report/__main__.py):
  python -m frem_jax.report --runs baseline=DIR1 supervision=DIR2 frem=DIR3 [fixed=DIR5] \
      [--search=DIR4 ...] --out=OUT
  python -m frem_jax.report --runs baseline=B0,B1,B2 supervision=S0,S1,S2 frem=F0,F1,F2 --out=OUT

Run names: baseline, supervision, frem (Tables 2/3, Table 1 when the FREM run
was trained with eval.frem_at_test), fixed (Table 4). A run that is not
given, or not finished, is left out with a note. Several runs of a method
(one per seed) are a comma list; then the tables give mean ± std over the
runs with n, and the paired differences between methods by seed (docs/fidelity.md).
"""

import json
import os
import shutil

import ml_collections
import numpy as np

from frem_jax import datasets
from frem_jax import files
from frem_jax import trained_run
from frem_jax import workdir as workdir_lib
from frem_jax import workdir_lock
from frem_jax.errors import UserError
from frem_jax.filenames import REPORT_JSON
from frem_jax.filenames import REPORT_MD
from frem_jax.filenames import RESULTS_FILE
from frem_jax.filenames import SEARCH_FIGURE
from frem_jax.report import figures as report_figures
from frem_jax.report import seeds as report_seeds
from frem_jax.report import tables as report_tables
from frem_jax.search import store as search_store


def _load_results(runs: dict, notes: list) -> dict:
  """{name: [(dir, results.json) of each of its runs that has one]}; missing runs become notes."""
  loaded = {}
  for name, paths in runs.items():
    if name not in report_tables.METHODS:
      notes.append(f'run {name!r} ({",".join(paths)}) is not one of {list(report_tables.METHODS)}: left out')
      continue
    for path in paths:
      results_path = os.path.join(path, RESULTS_FILE)
      try:
        with open(results_path) as f:
          loaded.setdefault(name, []).append((path, json.load(f)))
      except FileNotFoundError:
        notes.append(f'run {name!r}: {results_path} does not exist (not finished?): left out')
      except (OSError, ValueError) as e:
        notes.append(f'run {name!r}: {results_path} could not be read ({e}): left out')
  for name in report_tables.METHODS:
    if name not in runs:
      notes.append(f'no {name!r} run was given')
  return loaded


def _seed_sections(loaded: dict, md: list, report: dict, notes: list) -> None:
  """Tables 2/3, whole sections and Table 1 as mean ± std over seeds, and the paired differences."""
  runs = {n: [r for _, r in loaded[n]] for n in loaded}
  names = [n for n in report_tables.METHODS if n in runs and n != 'fixed']
  seeds = {'settings': report_seeds.settings(runs)}
  md += ['## Runs over seeds', '', 'From the runs\' configs:', ''] + [f'- {line}' for line in seeds['settings']] + ['']
  if names:
    table, seeds['table_iou'] = report_seeds.iou_table(runs, names)
    md += ['## Per-class test IoU over seeds (the paper\'s Tables 2/3)', '',
           'Mean ± sample standard deviation (ddof = 1) over the runs of each method, in %; n runs. '
           'With n = 1 there is no standard deviation and only the value is shown.', '', table, '']
    table, full = report_seeds.full_section_table(runs, names)
    if full:
      seeds['table_full_sections'] = full
      md += ['### Whole test sections (Drosophila), over seeds', '', table, '']
  t1 = report_seeds.table1(runs)
  if t1:
    seeds['table1'] = t1[1]
    md += ['## Enhancement at test time over seeds (Table 1)', '', t1[0], '']
  else:
    notes.append('Table 1 left out: it needs frem runs trained with eval.frem_at_test=True')
  seeds['paired'] = report_seeds.paired_differences(runs)
  if seeds['paired']:
    md += ['## Paired differences by seed', '',
           'A − B per seed, then the mean and a 95 % confidence interval (Student t over the paired '
           'differences), in percentage points.', '']
    md += [f'- {entry["sentence"]}' for entry in seeds['paired']] + ['']
  report['seed_stats'] = seeds


def _panels(runs: dict, results: dict, out: str, num_images: int, notes: list):
  """Figs. 5/6 from the first `num_images` test images of the runs' dataset, or None."""
  names = [n for n in ('baseline', 'supervision', 'frem', 'fixed') if n in results]
  if not names or num_images < 1:
    return None
  ref = names[-1] if 'frem' not in names else 'frem'
  config = ml_collections.ConfigDict(results[ref]['config'])
  data_dir = datasets.data_dir_of(config, runs[ref])
  try:
    data = datasets.load_dataset(config, data_dir)
  except UserError as e:
    notes.append(f'qualitative panels left out: the data of run {ref!r} could not be loaded ({e})')
    return None
  test = data.splits['test']
  raw = test.images[:num_images] * np.asarray(data.std, np.float32) + np.asarray(data.mean, np.float32)
  predictions = {}
  for name in names:
    if results[name]['config']['dataset'] != results[ref]['config']['dataset']:
      notes.append(f'qualitative panels: run {name!r} used another dataset than {ref!r}: left out')
      continue
    run = trained_run.load(runs[name])
    predictions[name] = np.argmax(run.logits(raw), axis=-1)
  return report_figures.panels(raw, test.masks[:num_images], predictions, list(data.class_names),
                               os.path.join(out, 'qualitative.png'))


def _searches(search_dirs: list, out: str, notes: list) -> list:
  summaries = []
  for i, path in enumerate(search_dirs):
    try:
      record = search_store.load(path)
    except UserError as e:
      notes.append(f'search {path}: {e}: left out')
      continue
    best = search_store.best_trial(record)
    space = record['space']['space']
    figure = None
    if os.path.exists(os.path.join(path, SEARCH_FIGURE)):
      figure = f'search_{space}_{i}.png'
      shutil.copyfile(os.path.join(path, SEARCH_FIGURE), os.path.join(out, figure))
    summaries.append({
        'dir': path, 'space': space, 'ranges': record['space']['ranges'],
        'trials': len(record['trials']),
        'ok': sum(t['status'] == 'ok' for t in record['trials']),
        'failed': sum(t['status'] == 'fail' for t in record['trials']),
        'best': None if best is None else {k: best[k] for k in ('number', 'values', 'val_miou', 'test_miou')},
        'figure': figure})
  return summaries


@workdir_lock.holding('out', '--out')
def write_report(runs: dict, search_dirs: list, out: str, num_images: int = 3) -> dict:
  """Writes OUT/report.md, OUT/report.json and the figures; returns the report's numbers."""
  workdir_lib.check_not_a_file(out, '--out')
  os.makedirs(out, exist_ok=True)
  notes = []
  runs = {n: [d] if isinstance(d, str) else list(d) for n, d in runs.items()}
  loaded = _load_results(runs, notes)
  several = any(len(d) > 1 for n, d in runs.items() if n in report_tables.METHODS)
  # One run per method: today's tables of that run. Several: statistics over seeds, and the single-run
  # tables below (Table 4, panels) from each method's first run.
  results = {n: v[0][1] for n, v in loaded.items()}
  runs_used = {n: [d for d, _ in v] for n, v in loaded.items()}
  report = {'runs': {n: (d[0] if len(d) == 1 and not several else d) for n, d in runs_used.items()},
            'notes': notes, 'figures': {}}
  first = {n: d[0] for n, d in runs_used.items()}
  md = ['# FREM report', '']

  names = [n for n in report_tables.METHODS if n in results and n != 'fixed']
  if several:
    _seed_sections(loaded, md, report, notes)
  elif names:
    table, report['table_iou'] = report_tables.iou_table(results, names)
    md += ['## Per-class test IoU (the paper\'s Tables 2/3)', '', table, '']
    table, full = report_tables.full_section_table(results, names)
    if full:
      report['table_full_sections'] = full
      md += ['### Whole test sections (Drosophila)', '', table, '']
  t1 = None if several else report_tables.table1(results)
  if t1:
    md += ['## Enhancement at test time (Table 1)', '', t1[0], '',
           f'FREM at test uses the channels of `{t1[1]["key"]}`.', '']
    report['table1'] = t1[1]
  elif not several:
    notes.append('Table 1 left out: it needs a frem run trained with eval.frem_at_test=True')
  t4 = report_tables.table4(results)
  if t4:
    md += ['## Fixed channels (Table 4)', '', t4[0], '']
    if several:
      md += ['Table 4 is from the first run given of each method.', '']
    report['table4'] = t4[1]
  else:
    notes.append('Table 4 left out: it needs a fixed run (e.g. configs/mouse.py:fixed)')

  metrics = {n: [report_figures.read_metrics(d) for d in runs_used[n]] for n in results}
  figures = {
      'learning_curves': report_figures.learning_curves(metrics, os.path.join(out, 'learning_curves.png')),
      'feature_magnitude': report_figures.feature_magnitude(metrics, os.path.join(out, 'feature_magnitude.png')),
      'feature_sums': report_figures.feature_sums(metrics, os.path.join(out, 'feature_sums.png')),
      'qualitative': _panels(first, results, out, num_images, notes),
  }
  captions = {
      'learning_curves': 'Validation mIoU per epoch (mean ± std over the runs of a method when it has several)',
      'feature_magnitude': 'Mean activation of the deepest stage and of its skip connection, per epoch (Fig. 3)',
      'feature_sums': 'Summed activation of the deepest stage: all channels (baseline), enhanced and other '
                      'channels (FREM), per epoch (Fig. 9)',
      'qualitative': 'Test images, ground truth and predictions (Figs. 5/6)'
                     + (', from the first run given of each method' if several else ''),
  }
  for key, path in figures.items():
    if path:
      report['figures'][key] = os.path.basename(path)
      md += [f'## {captions[key]}', '', f'![{key}]({os.path.basename(path)})', '']

  report['searches'] = _searches(search_dirs, out, notes)
  for s in report['searches']:
    md += [f'## TPE search ({s["space"]}): {s["dir"]}', '',
           f'{s["trials"]} trials ({s["ok"]} ok, {s["failed"]} failed), ranges {s["ranges"]}.', '']
    if s['best']:
      md += [f'Best trial {s["best"]["number"]}: {s["best"]["values"]}, validation mIoU '
             f'{report_tables.pct(s["best"]["val_miou"])} %, test mIoU {report_tables.pct(s["best"]["test_miou"])} %.', '']
    if s['figure']:
      md += [f'![search]({s["figure"]})', '']
  if notes:
    md += ['## Notes', ''] + [f'- {n}' for n in notes] + ['']
  files.write_text_atomic(os.path.join(out, REPORT_MD), '\n'.join(md))
  files.write_json_atomic(os.path.join(out, REPORT_JSON), report)
  return report
