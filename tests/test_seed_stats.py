"""Seed statistics: mean ± std, paired differences with a Student-t interval, curves; the report over seeds.

The expected numbers are computed by hand from the fake runs below (no training):
t(0.975, df=2) = 4.302653, t(0.975, df=1) = 12.706205.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from frem_jax import report
from frem_jax.report import seed_stats
from frem_jax.report import seeds as report_seeds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T2, T1 = 4.302652729749462, 12.706204736174698

# method -> per seed 0, 1, 2: (background IoU, cell IoU); mIoU is their mean.
IOUS = {
    'baseline': [(0.90, 0.50), (0.91, 0.53), (0.92, 0.56)],      # mIoU 0.70, 0.72, 0.74
    'supervision': [(0.86, 0.46), (0.87, 0.47), (0.89, 0.49)],   # mIoU 0.66, 0.67, 0.69
    'frem': [(0.90, 0.52), (0.92, 0.58), (0.93, 0.59)],          # mIoU 0.71, 0.75, 0.76
}
FULL = {'baseline': [0.75, 0.77, 0.79], 'supervision': [0.70, 0.71, 0.72], 'frem': [0.76, 0.80, 0.81]}
FREM_AT_TEST = [0.69, 0.74, 0.73]


def fake_results(method, seed, ious=None, full=None, at_test=None):
  bg, cell = ious if ious is not None else IOUS[method][seed]
  results = {'config': {'seed': seed, 'num_epochs': 3, 'dataset': {'name': 'drosophila_vnc', 'image_size': 256},
                        'model': {'features': [16, 32, 64, 128, 512]},
                        'frem': {'enabled': method == 'frem', 'num_selected': 8, 'factor': 250.0},
                        'supervision': {'enabled': method == 'supervision', 'weight': 0.2781}},
             'class_names': ['background', 'cell'], 'epochs_completed': 3, 'train_seconds': 30.0,
             'test': {'miou': (bg + cell) / 2, 'iou_per_class': {'background': bg, 'cell': cell}}}
  if full is not None:
    results['test_full_sections'] = {'miou': full}
  if at_test is not None:
    results['frem_at_test'] = {'test': {'miou': at_test}, 'key': 'k'}
  return results


def write_run(path, results, val_miou=(), features=True):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'results.json'), 'w') as f:
    json.dump(results, f)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for epoch, v in enumerate(val_miou, 1):
      row = {'epoch': epoch, 'val/miou': v}
      if features:
        row.update({'features/deepest_mean': 0.1 * epoch, 'features/skip_mean': 0.2 * epoch,
                    'features/all_sum': 10.0 * epoch, 'features/enhanced_sum': 1.0, 'features/other_sum': 9.0})
      f.write(json.dumps(row) + '\n')
  return str(path)


def study(seeds=(0, 1, 2)):
  return {m: [fake_results(m, s, full=FULL[m][s], at_test=FREM_AT_TEST[s] if m == 'frem' else None)
              for s in seeds] for m in IOUS}


def test_summary_is_mean_and_sample_std():
  s = seed_stats.summary([0.70, 0.72, 0.74])
  assert s['n'] == 3 and s['mean'] == pytest.approx(0.72) and s['std'] == pytest.approx(0.02)
  one = seed_stats.summary([0.7, None])
  assert one == {'mean': 0.7, 'std': None, 'n': 1, 'values': [0.7]}
  assert seed_stats.summary([]) == {'mean': None, 'std': None, 'n': 0, 'values': []}


def test_paired_difference_of_three_seeds():
  d = seed_stats.paired_difference({0: 0.71, 1: 0.75, 2: 0.76}, {0: 0.70, 1: 0.72, 2: 0.74})
  assert d['paired'] and d['seeds'] == [0, 1, 2] and d['n'] == 3
  assert d['differences'] == pytest.approx([0.01, 0.03, 0.02])
  assert d['mean'] == pytest.approx(0.02) and d['std'] == pytest.approx(0.01)
  half = T2 * 0.01 / math.sqrt(3)  # 0.0248414
  assert d['ci'] == pytest.approx([0.02 - half, 0.02 + half])
  assert d['excludes_zero'] is False


def test_paired_difference_of_two_seeds_and_of_one():
  d = seed_stats.paired_difference({0: 0.71, 1: 0.75}, {0: 0.70, 1: 0.72})
  assert d['n'] == 2 and d['std'] == pytest.approx(math.sqrt(2) * 0.01)
  assert d['ci'] == pytest.approx([0.02 - T1 * 0.01, 0.02 + T1 * 0.01])  # se = 0.01414 / sqrt(2) = 0.01
  one = seed_stats.paired_difference({0: 0.71}, {0: 0.70})
  assert one['n'] == 1 and one['mean'] == pytest.approx(0.01)
  assert one['ci'] is None and one['std'] is None and one['excludes_zero'] is None


def test_runs_of_different_seeds_are_not_paired():
  d = seed_stats.paired_difference({3: 0.71, 4: 0.75}, {0: 0.70, 1: 0.72})
  assert d == {'paired': False, 'unpaired_seeds': [0, 1, 3, 4],
               'reason': 'no common seed (seeds [3, 4] vs [0, 1]): runs of different seeds are not paired'}
  partial = seed_stats.paired_difference({0: 0.71, 1: 0.75}, {0: 0.70, 1: 0.72, 2: 0.74})
  assert partial['seeds'] == [0, 1] and partial['unpaired_seeds'] == [2]


def test_curve_mean_and_std_per_epoch():
  c = seed_stats.curve([[{'epoch': 1, 'x': 0.5}, {'epoch': 2, 'x': 0.6}, {'epoch': 3, 'x': 0.7}],
                        [{'epoch': 1, 'x': 0.3}, {'epoch': 2, 'x': 0.4}, {'epoch': 3}]], 'x')
  assert c['epoch'] == [1, 2, 3] and c['n'] == [2, 2, 1]
  assert c['mean'] == pytest.approx([0.4, 0.5, 0.7])
  assert c['std'][:2] == pytest.approx([math.sqrt(0.02)] * 2) and math.isnan(c['std'][2])


def test_seed_tables_and_sentences():
  runs = study()
  md, rows = report_seeds.iou_table(runs, ['baseline', 'supervision', 'frem'])
  assert '| U-Net + SE block | 3 | 91.00 ± 1.00 | 53.00 ± 3.00 | 72.00 ± 2.00 |' in md
  frem = rows[2]
  assert frem['seeds'] == [0, 1, 2] and frem['miou']['mean'] == pytest.approx(0.74)
  assert frem['miou']['std'] == pytest.approx(math.sqrt(0.0007))  # deviations -0.03, 0.01, 0.02

  paired = {(e['a_label'], e['b_label'], e['metric']): e for e in report_seeds.paired_differences(runs)}
  fb = paired[('FREM', 'baseline', 'test mIoU')]
  assert fb['sentence'] == ('FREM − baseline, test mIoU: +2.00 points (mean over seeds 0, 1, 2; n = 3), '
                            '95 % CI [−0.48, +4.48] points: the interval includes 0: these runs show no '
                            'difference at this level. Per seed: seed 0: +1.00, seed 1: +3.00, seed 2: +2.00.')
  fs = paired[('FREM', 'SuperVision', 'test mIoU')]
  # Differences 0.05, 0.08, 0.07: mean 0.066667, std 0.0152753, half-width 4.302653 * 0.0152753 / sqrt(3).
  half = T2 * math.sqrt(((0.05 - 0.2 / 3) ** 2 + (0.08 - 0.2 / 3) ** 2 + (0.07 - 0.2 / 3) ** 2) / 2) / math.sqrt(3)
  assert fs['ci'] == pytest.approx([0.2 / 3 - half, 0.2 / 3 + half]) and fs['excludes_zero']
  assert ('95 % CI [+2.87, +10.46] points: the interval excludes 0: FREM is higher than SuperVision on these '
          'seeds. Per seed: seed 0: +5.00, seed 1: +8.00, seed 2: +7.00.') in fs['sentence']
  assert paired[('FREM', 'baseline', 'test mIoU on whole sections')]['mean'] == pytest.approx(0.02)
  t1 = paired[('FREM enhanced at test', 'FREM not enhanced at test (Table 1)', 'test mIoU')]
  assert t1['differences'] == pytest.approx([-0.02, -0.01, -0.03])
  assert 'the interval includes 0' in t1['sentence']

  md, t1_data = report_seeds.table1(runs)
  assert '| the random enhancement in test phase | 3 | 72.00 ± 2.65 |' in md
  assert t1_data['frem_not_enhanced_at_test']['mean'] == pytest.approx(0.74)


def test_sentences_for_one_seed_and_for_different_seeds():
  one = {'baseline': [fake_results('baseline', 0)], 'frem': [fake_results('frem', 0)]}
  md, _ = report_seeds.iou_table(one, ['baseline', 'frem'])
  assert '| U-Net + SE block | 1 | 90.00 | 50.00 | 70.00 |' in md
  [entry] = report_seeds.paired_differences(one)
  assert entry['sentence'] == ('FREM − baseline, test mIoU: +1.00 points (mean over seeds 0; n = 1); '
                               'no interval with a single pair (n = 1). Per seed: seed 0: +1.00.')
  apart = {'baseline': [fake_results('baseline', s) for s in (0, 1)],
           'frem': [fake_results('frem', 0, ious=(0.9, 0.5)) | {'config': {'seed': s}} for s in (3, 4)]}
  [entry] = report_seeds.paired_differences(apart)
  assert not entry['paired']
  assert entry['sentence'] == ('FREM − baseline, test mIoU: not paired: no common seed (seeds [3, 4] vs [0, 1]): '
                               'runs of different seeds are not paired.')
  partial = {'baseline': [fake_results('baseline', s) for s in (0, 1, 2)],
             'frem': [fake_results('frem', s) for s in (0, 1)]}
  [entry] = report_seeds.paired_differences(partial)
  assert entry['n'] == 2 and entry['ci'] == pytest.approx([0.02 - T1 * 0.01, 0.02 + T1 * 0.01])
  assert 'Seed 2 has a run of one method only: not paired, left out.' in entry['sentence']
  twice = {'baseline': [fake_results('baseline', 0)] * 2, 'frem': [fake_results('frem', 0)] * 2}
  [entry] = report_seeds.paired_differences(twice)
  assert entry['sentence'] == ('FREM − baseline, test mIoU: not paired: FREM: seed 0 appears twice; '
                               'baseline: seed 0 appears twice (cannot pair by seed).')


def fake_study(root, seeds=(0, 1, 2)):
  """Writes the fake runs as run folders; returns {method: [dirs]}."""
  dirs = {}
  for method, runs in study(seeds).items():
    for results in runs:
      seed = results['config']['seed']
      curve = [0.3 + 0.1 * seed, 0.5 + 0.1 * seed, 0.6]
      dirs.setdefault(method, []).append(write_run(os.path.join(root, f'seed{seed}', method), results, curve))
  return dirs


def test_report_over_seeds(tmp_path):
  dirs = fake_study(str(tmp_path / 'study'))
  rep = report.write_report(dirs, [], str(tmp_path / 'out'), num_images=0)
  md = (tmp_path / 'out' / 'report.md').read_text()
  seeds = rep['seed_stats']
  assert [r['n'] for r in seeds['table_iou']] == [3, 3, 3]
  assert '| U-Net + SE block + FREM (proposed) | 3 | 91.67 ± 1.53 | 56.33 ± 3.79 | 74.00 ± 2.65 |' in md
  assert '| U-Net + SE block | 3 | 77.00 ± 2.00 | 77.00 ± 2.00 |' not in md  # tiles vs sections differ
  assert '| U-Net + SE block | 3 | 72.00 ± 2.00 | 77.00 ± 2.00 |' in md
  assert 'seed 0: +1.00, seed 1: +3.00, seed 2: +2.00' in md
  assert ('- FREM: seeds 0, 1, 2; epochs 3, widths (16, 32, 64, 128, 512), tiles 256², B = 8, X = 250.0' in md)
  assert '- SuperVision: seeds 0, 1, 2; epochs 3, widths (16, 32, 64, 128, 512), tiles 256², λ = 0.2781' in md
  assert 'FREM is higher than SuperVision on these seeds' in md
  assert seeds['table1']['frem_enhanced_at_test']['mean'] == pytest.approx(0.72)
  assert 'table_iou' not in rep and rep['runs']['frem'] == dirs['frem']
  assert set(rep['figures']) == {'learning_curves', 'feature_magnitude', 'feature_sums'}
  for name in rep['figures'].values():
    assert (tmp_path / 'out' / name).read_bytes()[:4] == b'\x89PNG'
  with open(tmp_path / 'out' / 'report.json') as f:
    assert json.load(f)['seed_stats']['paired'][0]['ci'] == pytest.approx(seeds['paired'][0]['ci'])


def test_one_run_per_method_keeps_the_single_run_tables(tmp_path):
  dirs = fake_study(str(tmp_path / 'study'), seeds=(0,))
  rep = report.write_report({m: d[0] for m, d in dirs.items()}, [], str(tmp_path / 'out'), num_images=0)
  md = (tmp_path / 'out' / 'report.md').read_text()
  assert "## Per-class test IoU (the paper's Tables 2/3)" in md
  assert '| U-Net + SE block | 90.00 | 50.00 | 70.00 |' in md
  assert 'seed_stats' not in rep and rep['table_iou'][0]['miou'] == pytest.approx(0.70)
  assert rep['runs']['frem'] == dirs['frem'][0]


def run_cli(*args):
  return subprocess.run([sys.executable, '-m', 'frem_jax.report', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_cli_over_seeds_end_to_end(tmp_path):
  dirs = fake_study(str(tmp_path / 'study'), seeds=(0, 1))
  dirs['frem'].append(str(tmp_path / 'study' / 'seed2' / 'frem'))  # not trained: a note
  proc = run_cli('--runs', *[f'{m}={",".join(d)}' for m, d in dirs.items()],
                 f'--out={tmp_path / "out"}', '--num_images=0')
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / 'out' / 'report.json') as f:
    rep = json.load(f)
  assert [r['n'] for r in rep['seed_stats']['table_iou']] == [2, 2, 2]
  fb = rep['seed_stats']['paired'][0]
  assert (fb['a'], fb['b'], fb['n']) == ('frem', 'baseline', 2)
  assert fb['ci'] == pytest.approx([0.02 - T1 * 0.01, 0.02 + T1 * 0.01])
  assert any('seed2/frem/results.json does not exist' in n for n in rep['notes'])


@pytest.mark.parametrize('spec', ['frem=a,,b', 'frem=a,', 'frem='])
def test_bad_run_lists_are_named(spec):
  with pytest.raises(report.UserError) as e:
    report.parse_runs([spec])
  assert str(e.value) == f"--runs: {spec!r} is not NAME=DIR or NAME=DIR1,DIR2,... (e.g. frem=runs/mouse_frem)"


def test_cli_bad_run_list_is_one_line(tmp_path):
  proc = run_cli('--runs', 'frem=a,,b', f'--out={tmp_path / "o"}')
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
      "error: --runs: 'frem=a,,b' is not NAME=DIR or NAME=DIR1,DIR2,... (e.g. frem=runs/mouse_frem)")
  assert 'Traceback' not in proc.stderr
