"""The search figure (the paper's Figs. 7/8): B against X coloured by validation mIoU, or λ against mIoU."""

import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from frem_jax import files
from frem_jax.filenames import SEARCH_FIGURE
from frem_jax.search import store as search_store


def plot(record: dict, workdir: str) -> str:
  """Writes `workdir/search.png` from a sweep record and returns its path."""
  ok = [t for t in record['trials'] if t['status'] == 'ok' and t.get('val_miou') is not None]
  best = search_store.best_trial(record)
  stopped = [t for t in record['trials'] if t['status'] == 'stopped']  # search.halving stopped them early
  fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
  if record['space']['space'] == 'frem':
    x = [t['values']['factor'] for t in ok]
    y = [t['values']['num_selected'] for t in ok]
    points = ax.scatter(x, y, c=[100 * t['val_miou'] for t in ok], cmap='coolwarm', s=40,
                        edgecolors='k', linewidths=0.4)
    if ok:
      fig.colorbar(points, ax=ax, label='validation mIoU [%]')
    if stopped:
      ax.scatter([t['values']['factor'] for t in stopped], [t['values']['num_selected'] for t in stopped],
                 marker='x', c='0.5', s=20, linewidths=0.8, label=f'stopped early ({len(stopped)})')
    ax.set_xlabel('X (frem.factor)')
    ax.set_ylabel('B (frem.num_selected)')
    (xlo, xhi), (ylo, yhi) = record['space']['ranges']['factor'], record['space']['ranges']['num_selected']
    ax.set_xlim(xlo - 0.02 * (xhi - xlo), xhi + 0.02 * (xhi - xlo))
    ax.set_ylim(ylo - 0.5, yhi + 0.5)
    if best:
      ax.scatter([best['values']['factor']], [best['values']['num_selected']], marker='*', s=300,
                 facecolors='none', edgecolors='k', linewidths=1.5,
                 label=f'best: B={best["values"]["num_selected"]}, X={best["values"]["factor"]:.1f}')
  else:
    ax.scatter([t['values']['weight'] for t in ok], [100 * t['val_miou'] for t in ok],
               c=[100 * t['val_miou'] for t in ok], cmap='coolwarm', s=40, edgecolors='k', linewidths=0.4)
    if stopped:
      ax.scatter([t['values']['weight'] for t in stopped], [100 * t['val_miou'] for t in stopped],
                 marker='x', c='0.5', s=20, linewidths=0.8,
                 label=f'stopped early ({len(stopped)}), mIoU at its last rung')
    ax.set_xlabel('λ (supervision.weight)')
    ax.set_ylabel('validation mIoU [%]')
    ax.set_xlim(*record['space']['ranges']['weight'])
    if best:
      ax.scatter([best['values']['weight']], [100 * best['val_miou']], marker='*', s=300,
                 facecolors='none', edgecolors='k', linewidths=1.5,
                 label=f'best: λ={best["values"]["weight"]:.4f}')
  failed = sum(t['status'] == 'fail' for t in record['trials'])
  title = (f'TPE search with halving: {len(ok)} trials to the end, {len(stopped)} stopped early'
           if 'halving' in record else f'TPE search: {len(ok)} trials')
  ax.set_title(title + (f' ({failed} failed)' if failed else ''), **({'fontsize': 10} if 'halving' in record else {}))
  if best or stopped:
    ax.legend(loc='best', fontsize=8)
  fig.tight_layout()
  return files.save_figure_atomic(fig, os.path.join(workdir, SEARCH_FIGURE))
