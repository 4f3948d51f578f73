"""The report's tables over seeds: Tables 2/3 and Table 1 as mean ± std (n), paired differences in words.

Input: {method: [results.json dicts of its runs]}. Numbers come from seed_stats;
this module only lays them out.
"""

from typing import Optional

from frem_jax.report import seed_stats
from frem_jax.report.tables import _markdown  # pylint: disable=protected-access
from frem_jax.report.tables import METHODS
from frem_jax.report.tables import pct

# Short names for sentences.
LABELS = {'baseline': 'baseline', 'supervision': 'SuperVision', 'frem': 'FREM', 'fixed': 'FREM (fixed channels)'}
# (A, B) pairs whose paired difference A − B the report gives, when both have runs.
PAIRS = (('frem', 'baseline'), ('frem', 'supervision'), ('supervision', 'baseline'))


def cell(s: dict) -> str:
  """'mean ± std' in %; just the mean when n = 1; '–' when n = 0."""
  if s['mean'] is None:
    return '–'
  return pct(s['mean']) if s['std'] is None else f'{pct(s["mean"])} ± {pct(s["std"])}'


def _seeds(runs: list) -> list:
  return [seed_stats.run_seed(r) for r in runs]


def iou_table(loaded: dict, names: list) -> tuple[str, list]:
  """Tables 2/3 over seeds: per-class test IoU and mIoU [%], mean ± std with n; returns (markdown, rows)."""
  class_names = []
  for name in names:
    for results in loaded[name]:
      class_names += [c for c in results['class_names'] if c not in class_names]
  rows, data = [], []
  for name in names:
    runs = loaded[name]
    ious = {c: seed_stats.summary([r['test']['iou_per_class'].get(c) for r in runs]) for c in class_names}
    miou = seed_stats.summary([r['test']['miou'] for r in runs])
    rows.append([METHODS.get(name, name), len(runs)] + [cell(ious[c]) for c in class_names] + [cell(miou)])
    data.append({'run': name, 'method': METHODS.get(name, name), 'n': len(runs), 'seeds': _seeds(runs),
                 'iou_per_class': ious, 'miou': miou})
  header = ['method', 'n'] + [f'{c} IoU [%]' for c in class_names] + ['mIoU [%]']
  return _markdown(header, rows), data


def full_section_table(loaded: dict, names: list) -> tuple[str, list]:
  """Test mIoU [%] on tiles and on whole sections over seeds, for the methods whose runs have both."""
  rows, data = [], []
  for name in names:
    runs = [r for r in loaded[name] if r.get('test_full_sections') is not None]
    if not runs:
      continue
    tiles = seed_stats.summary([r['test']['miou'] for r in runs])
    full = seed_stats.summary([r['test_full_sections']['miou'] for r in runs])
    rows.append([METHODS.get(name, name), len(runs), cell(tiles), cell(full)])
    data.append({'run': name, 'n': len(runs), 'seeds': _seeds(runs), 'tiles_miou': tiles,
                 'full_sections_miou': full})
  header = ['method', 'n', 'test mIoU on 256² tiles [%]', 'test mIoU on full sections [%]']
  return _markdown(header, rows), data


def table1(loaded: dict) -> Optional[tuple[str, dict]]:
  """Table 1 over seeds: baseline, FREM with and without the enhancement at test; None without such FREM runs."""
  frem = [r for r in loaded.get('frem', []) if 'frem_at_test' in r]
  if not frem:
    return None
  baseline = loaded.get('baseline', [])
  data = {'baseline': seed_stats.summary([r['test']['miou'] for r in baseline]),
          'frem_enhanced_at_test': seed_stats.summary([r['frem_at_test']['test']['miou'] for r in frem]),
          'frem_not_enhanced_at_test': seed_stats.summary([r['test']['miou'] for r in frem]),
          'seeds': _seeds(frem)}
  rows = [['baseline (U-Net + SE block)', data['baseline']['n'], cell(data['baseline'])],
          ['the random enhancement in test phase', data['frem_enhanced_at_test']['n'],
           cell(data['frem_enhanced_at_test'])],
          ['without random enhancement in test phase', data['frem_not_enhanced_at_test']['n'],
           cell(data['frem_not_enhanced_at_test'])]]
  return _markdown(['', 'n', 'test mIoU [%]'], rows), data


def _points(x: float) -> str:
  return f'{100 * x:+.2f}'.replace('-', '−')


def sentence(entry: dict) -> str:
  """In words: the mean paired difference, its interval, whether the interval excludes 0, the per-seed differences."""
  what = f'{entry["a_label"]} − {entry["b_label"]}, {entry["metric"]}'
  if not entry['paired']:
    return f'{what}: not paired: {entry["reason"]}.'
  seeds = ', '.join(str(s) for s in entry['seeds'])
  text = f'{what}: {_points(entry["mean"])} points (mean over seeds {seeds}; n = {entry["n"]})'
  if entry['ci'] is None:
    text += '; no interval with a single pair (n = 1).'
  else:
    lo, hi = entry['ci']
    level = f'{100 * entry["confidence"]:g} %'
    text += f', {level} CI [{_points(lo)}, {_points(hi)}] points: '
    if entry['excludes_zero']:
      text += (f'the interval excludes 0: {entry["a_label"]} is {"higher" if lo > 0 else "lower"} than '
               f'{entry["b_label"]} on these seeds.')
    else:
      text += 'the interval includes 0: these runs show no difference at this level.'
  unpaired = entry['unpaired_seeds']
  if unpaired:
    text += (f' {"Seed" if len(unpaired) == 1 else "Seeds"} {", ".join(str(s) for s in unpaired)} '
             f'{"has" if len(unpaired) == 1 else "have"} a run of one method only: not paired, left out.')
  if entry['paired']:
    text += ' Per seed: ' + ', '.join(f'seed {s}: {_points(d)}' for s, d in zip(entry['seeds'], entry['differences'])) + '.'
  return text


def _pair(a_name, b_name, a_runs, b_runs, metric, a_fn, b_fn) -> dict:
  a, a_problems = seed_stats.by_seed(a_runs, a_fn)
  b, b_problems = seed_stats.by_seed(b_runs, b_fn)
  problems = [f'{LABELS[a_name]}: {p}' for p in a_problems] + [f'{LABELS[b_name]}: {p}' for p in b_problems]
  if problems:
    entry = {'paired': False, 'unpaired_seeds': [], 'reason': '; '.join(problems) + ' (cannot pair by seed)'}
  else:
    entry = seed_stats.paired_difference(a, b)
  return {'a': a_name, 'b': b_name, 'a_label': LABELS[a_name], 'b_label': LABELS[b_name],
          'metric': metric, **entry}


def _miou(results):
  return results['test']['miou']


def _full_miou(results):
  return (results.get('test_full_sections') or {}).get('miou')


def paired_differences(loaded: dict) -> list:
  """Paired A − B differences for PAIRS (test mIoU; whole sections when present; Table 1), each with a 'sentence'."""
  entries = []
  for a, b in PAIRS:
    if not loaded.get(a) or not loaded.get(b):
      continue
    entries.append(_pair(a, b, loaded[a], loaded[b], 'test mIoU', _miou, _miou))
    if any(_full_miou(r) is not None for r in loaded[a] + loaded[b]):
      entries.append(_pair(a, b, loaded[a], loaded[b], 'test mIoU on whole sections', _full_miou, _full_miou))
  frem = [r for r in loaded.get('frem', []) if 'frem_at_test' in r]
  if frem:
    entry = _pair('frem', 'frem', frem, frem, 'test mIoU',
                  lambda r: r['frem_at_test']['test']['miou'], _miou)
    entry.update(a_label='FREM enhanced at test', b_label='FREM not enhanced at test (Table 1)')
    entries.append(entry)
  for entry in entries:
    entry['sentence'] = sentence(entry)
  return entries


def settings(loaded: dict) -> list:
  """One line per method: its seeds and the protocol read from its runs' configs (epochs, widths, tiles, B, X, λ)."""
  lines = []
  for name, runs in loaded.items():
    configs = [r.get('config', {}) for r in runs]
    def values(get):
      found = []
      for c in configs:
        try:
          v = get(c)
        except (KeyError, TypeError):
          continue
        if v not in found:
          found.append(v)
      return ' / '.join(str(tuple(v) if isinstance(v, list) else v) for v in found) or '?'
    text = (f'{LABELS.get(name, name)}: seeds {", ".join(str(s) for s in _seeds(runs))}; '
            f'epochs {values(lambda c: c["num_epochs"])}, widths {values(lambda c: c["model"]["features"])}, '
            f'tiles {values(lambda c: c["dataset"]["image_size"])}²')
    if any(c.get('frem', {}).get('enabled') for c in configs):
      text += f', B = {values(lambda c: c["frem"]["num_selected"])}, X = {values(lambda c: c["frem"]["factor"])}'
    if any(c.get('supervision', {}).get('enabled') for c in configs):
      text += f', λ = {values(lambda c: c["supervision"]["weight"])}'
    lines.append(text)
  return lines
