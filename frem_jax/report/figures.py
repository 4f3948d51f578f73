"""The paper's figures from runs' logs: Fig. 3 (feature magnitude), Fig. 9 (feature sums), Figs. 5/6 (panels)."""

import json
import os
from typing import Optional

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top
import numpy as np

from frem_jax import files
from frem_jax.filenames import METRICS_FILE
from frem_jax.palette import CLASS_COLOURS
from frem_jax.report import seed_stats
from frem_jax.report.tables import METHODS


def read_metrics(workdir: str) -> list:
  """The rows of `workdir/metrics.jsonl` (one per epoch); [] if there is none."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _save(fig, path: str) -> str:
  fig.tight_layout()
  return files.save_figure_atomic(fig, path)


def _band(ax, runs_rows: list, key: str, label: Optional[str] = None, scale: float = 1.0) -> None:
  """`key` against epochs: one run's line, or the mean over runs with a ± std band (label says n)."""
  c = seed_stats.curve(runs_rows, key)
  mean = np.asarray(c['mean']) * scale
  runs = sum(any(r.get(key) is not None for r in rows) for rows in runs_rows)
  if runs > 1 and label is not None:
    label = f'{label} (mean ± std, n = {runs})'
  line, = ax.plot(c['epoch'], mean, label=label)
  std = np.asarray(c['std']) * scale
  if runs > 1:
    ax.fill_between(c['epoch'], mean - std, mean + std, color=line.get_color(), alpha=0.25, linewidth=0)


def _has(runs_rows: list, key: str) -> bool:
  return any(key in r for rows in runs_rows for r in rows)


def feature_magnitude(metrics: dict, path: str) -> Optional[str]:
  """Fig. 3: mean activation of the deepest stage and of its skip connection against epochs, per method.

  `metrics` maps a method to the metrics.jsonl rows of each of its runs; several runs are drawn as
  mean ± std over them.
  """
  runs = [(n, metrics[n]) for n in ('baseline', 'frem', 'fixed', 'supervision')
          if _has(metrics.get(n, []), 'features/deepest_mean')]
  if not runs:
    return None
  fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), dpi=110, squeeze=False)
  for ax, (name, rows) in zip(axes[0], runs):
    _band(ax, rows, 'features/deepest_mean', 'deepest stage (FREM\'s input)')
    _band(ax, rows, 'features/skip_mean', 'skip connection (first decoder stage)')
    ax.set_title(METHODS.get(name, name), fontsize=9)
    ax.set_xlabel('epoch')
    ax.set_ylabel('mean activation after ReLU')
    ax.legend(fontsize=7)
  return _save(fig, path)


def feature_sums(metrics: dict, path: str) -> Optional[str]:
  """Fig. 9: per-image sum of the deepest stage's activations: all channels (baseline), enhanced and not (FREM)."""
  panels = []
  if _has(metrics.get('baseline', []), 'features/all_sum'):
    panels.append((f'{METHODS["baseline"]}: all channels', metrics['baseline'], 'features/all_sum'))
  for name in ('frem', 'fixed'):
    rows = metrics.get(name, [])
    if _has(rows, 'features/enhanced_sum'):
      panels.append((f'{METHODS[name]}: enhanced channels', rows, 'features/enhanced_sum'))
      panels.append((f'{METHODS[name]}: other channels', rows, 'features/other_sum'))
  if not panels:
    return None
  fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2), dpi=110, squeeze=False)
  for ax, (title, rows, key) in zip(axes[0], panels):
    _band(ax, rows, key)
    n = sum(any(key in r for r in run) for run in rows)
    ax.set_title(title + (f'\n(mean ± std over n = {n} runs)' if n > 1 else ''), fontsize=8)
    ax.set_xlabel('epoch')
    ax.set_ylabel('sum of activations per image')
  return _save(fig, path)


def learning_curves(metrics: dict, path: str) -> Optional[str]:
  """Validation mIoU [%] against epochs, one line per method (mean ± std band over its runs)."""
  names = [n for n in METHODS if _has(metrics.get(n, []), 'val/miou')]
  if not names:
    return None
  fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
  for name in names:
    _band(ax, metrics[name], 'val/miou', METHODS[name], scale=100)
  ax.set_xlabel('epoch')
  ax.set_ylabel('validation mIoU [%]')
  ax.legend(fontsize=7)
  return _save(fig, path)


def colourize(class_map: np.ndarray) -> np.ndarray:
  """[H, W] class indices -> [H, W, 3] uint8 colours of CLASS_COLOURS."""
  palette = np.asarray(CLASS_COLOURS, np.uint8)
  return palette[np.clip(class_map, 0, len(palette) - 1)]


def panels(images: np.ndarray, masks: np.ndarray, predictions: dict, class_names: list,
           path: str) -> str:
  """Figs. 5/6: per image, the input, the ground truth and each run's prediction, with a class legend."""
  columns = ['input', 'ground truth'] + [METHODS.get(n, n) for n in predictions]
  fig, axes = plt.subplots(len(images), len(columns), figsize=(2.4 * len(columns), 2.5 * len(images)),
                           dpi=110, squeeze=False)
  for i, image in enumerate(images):
    shown = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
    lo, hi = np.percentile(shown, (1, 99))
    cells = [np.clip((shown - lo) / max(hi - lo, 1e-6), 0, 1), colourize(masks[i])]
    cells += [colourize(p[i]) for p in predictions.values()]
    for j, cell in enumerate(cells):
      ax = axes[i, j]
      ax.imshow(cell, cmap='gray' if cell.ndim == 2 else None, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(columns[j], fontsize=7)
  handles = [Patch(facecolor=np.asarray(CLASS_COLOURS[k]) / 255, edgecolor='k', label=name)
             for k, name in enumerate(class_names)]
  fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  return files.save_figure_atomic(fig, path)
