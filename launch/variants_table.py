"""Issue 26's table: the variance-shift and draws variants against the study's baseline, paired by seed.

Usage:
  python launch/variants_table.py --variants=DIR [--study=docs/fidelity/report.json] [--json=OUT]

DIR holds `seed<N>/<method>/results.json` as `launch/study.sh --methods=...` writes them
(frem_reestimate, frem_step, frem_step_reestimate, baseline_reestimate). The study's own
baseline and FREM runs come from its committed report (`seed_stats.table_iou` and
`seed_stats.table1`), so nothing is retrained. Prints a markdown table of test mIoU [%]: mean ±
std, n, the values by seed, and the paired difference to the baseline (and to the study's FREM)
with its 95 % Student-t interval; for FREM with re-estimated statistics also the difference to the
control, the baseline with re-estimated statistics (the fix on both sides); and, for the FREM
rows, Table 1's test mIoU with FREM kept on at test, mean ± std and by seed.
Seeds that only one side has are not paired; the table says how many were.
"""

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from frem_jax.report import seed_stats  # pylint: disable=wrong-import-position
from frem_jax.report import seeds  # pylint: disable=wrong-import-position
from frem_jax.report.tables import pct  # pylint: disable=wrong-import-position

VARIANTS = {
    'frem_reestimate': 'FREM + eval.reestimate_statistics',
    'frem_step': "FREM + frem.redraw='step'",
    'frem_step_reestimate': "FREM + redraw='step' + reestimate_statistics",
    'baseline_reestimate': 'baseline + eval.reestimate_statistics',
}
CONTROL = 'baseline_reestimate'  # re-estimates the baseline's statistics: the rows that re-estimate FREM's are paired with it


def study_values(report: dict) -> dict:
  """{'baseline': {seed: mIoU}, 'frem': {...}, 'frem_at_test': {...}} from the study's report.json."""
  stats = report['seed_stats']
  out = {}
  for row in stats['table_iou']:
    out[row['run']] = dict(zip(row['seeds'], row['miou']['values']))
  table1 = stats.get('table1') or {}
  if table1:
    out['frem_at_test'] = dict(zip(table1['seeds'], table1['frem_enhanced_at_test']['values']))
  return out


def variant_values(variants_dir: str) -> dict:
  """{method: {'test': {seed: mIoU}, 'frem_at_test': {seed: mIoU}, 'reestimate_s': [...], 'train_s': [...]}}."""
  out = {}
  for path in sorted(glob.glob(os.path.join(variants_dir, 'seed*', '*', 'results.json'))):
    method = os.path.basename(os.path.dirname(path))
    with open(path) as f:
      results = json.load(f)
    seed = seed_stats.run_seed(results)
    entry = out.setdefault(method, {'test': {}, 'frem_at_test': {}, 'reestimate_s': [], 'train_s': []})
    entry['test'][seed] = results['test']['miou']
    if results.get('frem_at_test'):
      entry['frem_at_test'][seed] = results['frem_at_test']['test']['miou']
    if results.get('reestimate_seconds') is not None:
      entry['reestimate_s'].append(results['reestimate_seconds'])
    entry['train_s'].append(results.get('train_seconds'))
  return out


def _summary(values: dict) -> dict:
  """seed_stats.summary of {seed: test mIoU}, in seed order."""
  return seed_stats.summary([values[k] for k in sorted(values)])


def _cell(values: dict) -> str:
  """'mean ± std' in % of {seed: test mIoU}, as the report's tables."""
  return seeds.cell(_summary(values))


def _by_seed(values: dict) -> str:
  """The values of seeds 0, 1, 2 in %, '–' for a seed without one."""
  return ', '.join(pct(values.get(s)) for s in (0, 1, 2))


def _diff(a: dict, b: dict) -> tuple[str, dict]:
  d = seed_stats.paired_difference(a, b)
  if not d['paired']:
    return '–', d
  text = f'{100 * d["mean"]:+.2f}'
  if d['ci'] is not None:
    text += f' [{100 * d["ci"][0]:+.2f}, {100 * d["ci"][1]:+.2f}]'
  return f'{text} (n = {d["n"]})', d


def table(study: dict, variants: dict) -> tuple[str, dict]:
  """The markdown table (rows: the study's baseline and FREM, then each variant) and its data."""
  lines = ['| run | n | test mIoU [%] | by seed 0, 1, 2 | − baseline, 95 % CI | − FREM (study), 95 % CI '
           '| − (baseline + reestimate_statistics), 95 % CI | Table 1: FREM kept on at test [%], by seed 0, 1, 2 |',
           '|---|---|---|---|---|---|---|---|']
  control = variants.get(CONTROL, {}).get('test')
  kept_on = {'frem': study.get('frem_at_test', {})}
  kept_on.update({m: v['frem_at_test'] for m, v in variants.items() if v['frem_at_test']})
  data = {}
  rows = [('baseline', 'baseline (study)', study['baseline']), ('frem', 'FREM, B = 8, X = 250 (study)', study['frem'])]
  rows += [(m, VARIANTS[m], variants[m]['test']) for m in VARIANTS if m in variants]
  for name, label, values in rows:
    base_text, base = _diff(values, study['baseline']) if name != 'baseline' else ('', None)
    frem_text, frem = _diff(values, study['frem']) if name.startswith('frem_') else ('', None)
    paired_with_control = control and name.startswith('frem_') and name.endswith('_reestimate')
    control_text, minus_control = _diff(values, control) if paired_with_control else ('', None)
    on = kept_on.get(name)
    on_text = f'{_cell(on)} ({_by_seed(on)})' if on else ''
    lines.append(f'| {label} | {len(values)} | {_cell(values)} | {_by_seed(values)} | {base_text} | {frem_text} '
                 f'| {control_text} | {on_text} |')
    data[name] = {'test_miou': _summary(values),
                  'seeds': sorted(values), 'minus_baseline': base, 'minus_frem': frem,
                  'minus_control': minus_control}
    if on:
      data[name]['frem_at_test_miou'] = _summary(on)
  costs = {m: {'reestimate_s': v['reestimate_s'], 'train_s': v['train_s']} for m, v in variants.items()}
  data['seconds'] = costs
  return '\n'.join(lines), data


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--variants', required=True, help='the folder with seed<N>/<method>/results.json')
  parser.add_argument('--study', default=os.path.join(ROOT, 'docs', 'fidelity', 'report.json'),
                      help="the study's report.json (its baseline and FREM runs)")
  parser.add_argument('--json', help='also write the table\'s numbers to this file')
  args = parser.parse_args()
  for path in (args.variants, args.study):
    if not os.path.exists(path):
      sys.exit(f'error: {path} does not exist')
  variants = variant_values(args.variants)
  if not variants:
    sys.exit(f'error: no seed*/<method>/results.json under {args.variants}; has any variant run finished?')
  with open(args.study) as f:
    try:
      study = study_values(json.load(f))
    except (KeyError, ValueError) as e:
      sys.exit(f'error: {args.study} is not a study report with seed statistics ({e!r}); '
               'give the report.json that frem_jax.report wrote for the study')
  text, data = table(study, variants)
  print(text)
  if args.json:
    tmp = args.json + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(data, f, indent=1)
    os.replace(tmp, args.json)


if __name__ == '__main__':
  main()
