"""The paper's tables from runs' `results.json`: Tables 2/3 (per-class IoU), Table 1 (FREM at test), Table 4 (fixed channels)."""

from typing import Optional

# Run names the report knows, in the order of the paper's tables.
METHODS = {
    'baseline': 'U-Net + SE block',
    'supervision': 'U-Net + SE block + SuperVision',
    'frem': 'U-Net + SE block + FREM (proposed)',
    'fixed': 'FREM on fixed channels (Table 4)',
}


def pct(value: Optional[float]) -> str:
  """A fraction as a percentage with two decimals; '–' for None."""
  return '–' if value is None else f'{100 * value:.2f}'


def _markdown(header: list, rows: list) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def iou_table(results: dict, names: list) -> tuple[str, list]:
  """Tables 2/3: per-class test IoU and mIoU [%] of each run; returns (markdown, rows as dicts)."""
  class_names = []
  for name in names:
    for c in results[name]['class_names']:
      if c not in class_names:
        class_names.append(c)
  rows, data = [], []
  for name in names:
    test = results[name]['test']
    ious = test['iou_per_class']
    rows.append([METHODS.get(name, name)] + [pct(ious.get(c)) for c in class_names] + [pct(test['miou'])])
    data.append({'run': name, 'method': METHODS.get(name, name), 'iou_per_class': ious,
                 'miou': test['miou']})
  return _markdown(['method'] + [f'{c} IoU [%]' for c in class_names] + ['mIoU [%]'], rows), data


def full_section_table(results: dict, names: list) -> tuple[str, list]:
  """Test mIoU [%] on tiles and on whole sections, for the runs that have both (Drosophila)."""
  rows, data = [], []
  for name in names:
    full = results[name].get('test_full_sections')
    if full is None:
      continue
    rows.append([METHODS.get(name, name), pct(results[name]['test']['miou']), pct(full['miou'])])
    data.append({'run': name, 'tiles_miou': results[name]['test']['miou'], 'full_sections_miou': full['miou']})
  return _markdown(['method', 'test mIoU on 256² tiles [%]', 'test mIoU on full sections [%]'], rows), data


def table1(results: dict) -> Optional[tuple[str, dict]]:
  """Table 1: baseline, FREM with the enhancement at test, FREM without; None without a FREM run that has both."""
  frem = results.get('frem')
  if frem is None or 'frem_at_test' not in frem:
    return None
  data = {'baseline': results['baseline']['test']['miou'] if 'baseline' in results else None,
          'frem_enhanced_at_test': frem['frem_at_test']['test']['miou'],
          'frem_not_enhanced_at_test': frem['test']['miou'],
          'key': frem['frem_at_test']['key']}
  rows = [['baseline (U-Net + SE block)', pct(data['baseline'])],
          ['the random enhancement in test phase', pct(data['frem_enhanced_at_test'])],
          ['without random enhancement in test phase', pct(data['frem_not_enhanced_at_test'])]]
  return _markdown(['', 'test mIoU [%]'], rows), data


def table4(results: dict) -> Optional[tuple[str, list]]:
  """Table 4: baseline, FREM re-drawn each epoch, FREM on fixed channels; None without a `fixed` run."""
  if 'fixed' not in results:
    return None
  names = [n for n in ('baseline', 'frem', 'fixed') if n in results]
  _, data = iou_table(results, names)
  rows = []
  for row in data:
    frem = results[row['run']]['config']['frem']
    row['frem'] = ({'num_selected': frem['num_selected'], 'factor': frem['factor'], 'mode': frem['mode']}
                   if frem['enabled'] else None)
    enhancement = (f'{frem["num_selected"]} channels × {frem["factor"]:g}, '
                   f'{"fixed" if frem["mode"] == "fixed" else "re-drawn every epoch"}'
                   if frem['enabled'] else 'none')
    rows.append([row['method'], enhancement] + [pct(v) for v in row['iou_per_class'].values()]
                + [pct(row['miou'])])
  classes = list(data[0]['iou_per_class'])
  header = ['method', 'enhancement (B × X)'] + [f'{c} IoU [%]' for c in classes] + ['mIoU [%]']
  return _markdown(header, rows), data
