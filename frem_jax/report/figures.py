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


def _series(rows: list, key: str) -> tuple[list, list]:
  pairs = [(r['epoch'], r[key]) for r in rows if r.get(key) is not None]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def feature_magnitude(metrics: dict, path: str) -> Optional[str]:
  """Fig. 3: mean activation of the deepest stage and of its skip connection against epochs, per run."""
  runs = [(n, metrics[n]) for n in ('baseline', 'frem', 'fixed', 'supervision')
          if any('features/deepest_mean' in r for r in metrics.get(n, []))]
  if not runs:
    return None
  fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), dpi=110, squeeze=False)
  for ax, (name, rows) in zip(axes[0], runs):
    ax.plot(*_series(rows, 'features/deepest_mean'), label='deepest stage (FREM\'s input)')
    ax.plot(*_series(rows, 'features/skip_mean'), label='skip connection (first decoder stage)')
    ax.set_title(METHODS.get(name, name), fontsize=9)
    ax.set_xlabel('epoch')
    ax.set_ylabel('mean activation after ReLU')
    ax.legend(fontsize=7)
  return _save(fig, path)


def feature_sums(metrics: dict, path: str) -> Optional[str]:
  """Fig. 9: per-image sum of the deepest stage's activations: all channels (baseline), enhanced and not (FREM)."""
  panels = []
  if any('features/all_sum' in r for r in metrics.get('baseline', [])):
    panels.append((f'{METHODS["baseline"]}: all channels', metrics['baseline'], 'features/all_sum'))
  for name in ('frem', 'fixed'):
    rows = metrics.get(name, [])
    if any('features/enhanced_sum' in r for r in rows):
      panels.append((f'{METHODS[name]}: enhanced channels', rows, 'features/enhanced_sum'))
      panels.append((f'{METHODS[name]}: other channels', rows, 'features/other_sum'))
  if not panels:
    return None
  fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.2), dpi=110, squeeze=False)
  for ax, (title, rows, key) in zip(axes[0], panels):
    ax.plot(*_series(rows, key))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel('epoch')
    ax.set_ylabel('sum of activations per image')
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
