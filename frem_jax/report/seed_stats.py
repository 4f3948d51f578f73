"""Statistics over seeds: mean ± sample std of a metric, paired differences with a Student-t interval, curves.

Pure numpy/scipy. A "run" here is one training run's `results.json` (a dict);
its seed is `results['config']['seed']`. Values are fractions (as in
results.json); the report shows them in %.
"""

import math
from typing import Optional

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def run_seed(results: dict) -> Optional[int]:
  """The seed a run was trained with (its config's `seed`), or None if its results do not say."""
  seed = results.get('config', {}).get('seed')
  return None if seed is None else int(seed)


def summary(values: list) -> dict:
  """{'mean', 'std', 'n', 'values'} of the non-None `values`; std is the sample std (ddof=1), None for n < 2."""
  kept = [float(v) for v in values if v is not None]
  n = len(kept)
  return {'mean': float(np.mean(kept)) if n else None,
          'std': float(np.std(kept, ddof=1)) if n >= 2 else None,
          'n': n, 'values': kept}


def t_interval(values: list, confidence: float = CONFIDENCE) -> Optional[tuple[float, float]]:
  """The Student-t confidence interval of the mean of `values`; None for fewer than 2 values."""
  n = len(values)
  if n < 2:
    return None
  mean = float(np.mean(values))
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)
  return mean - half, mean + half


def by_seed(runs: list, value_fn) -> tuple[dict, list]:
  """{seed: value_fn(results)} of `runs`, and the reasons a pairing by seed is impossible (empty if none)."""
  values, problems = {}, []
  for results in runs:
    seed = run_seed(results)
    if seed is None:
      problems.append('a run has no seed in its config')
    elif seed in values:
      problems.append(f'seed {seed} appears twice')
    else:
      values[seed] = value_fn(results)
  return values, problems


def paired_difference(a: dict, b: dict, confidence: float = CONFIDENCE) -> dict:
  """A − B paired by seed, from {seed: value} of each; the interval is Student t over the differences.

  Only seeds both have are paired (the others are listed in 'unpaired_seeds').
  Returns 'paired' False (and 'reason') when no seed is common. With one pair
  there is a difference but no interval ('ci' None).
  """
  common = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
  unpaired = sorted((set(a) | set(b)) - set(common))
  if not common:
    return {'paired': False, 'unpaired_seeds': unpaired,
            'reason': f'no common seed (seeds {sorted(a)} vs {sorted(b)}): runs of different seeds are not paired'}
  diffs = [float(a[s]) - float(b[s]) for s in common]
  ci = t_interval(diffs, confidence)
  return {'paired': True, 'seeds': common, 'unpaired_seeds': unpaired,
          'differences': diffs, 'n': len(diffs), 'mean': float(np.mean(diffs)),
          'std': float(np.std(diffs, ddof=1)) if len(diffs) >= 2 else None,
          'confidence': confidence, 'ci': None if ci is None else [ci[0], ci[1]],
          'excludes_zero': None if ci is None else bool(ci[0] > 0 or ci[1] < 0)}


def curve(runs_rows: list, key: str) -> dict:
  """Mean and sample std of `key` per epoch over runs' metrics.jsonl rows; epochs no run logged are left out.

  Returns {'epoch', 'mean', 'std', 'n'} as lists; std is NaN where only one run has the epoch.
  """
  per_epoch = {}
  for rows in runs_rows:
    for row in rows:
      if row.get(key) is not None:
        per_epoch.setdefault(row['epoch'], []).append(float(row[key]))
  epochs = sorted(per_epoch)
  return {'epoch': epochs,
          'mean': [float(np.mean(per_epoch[e])) for e in epochs],
          'std': [float(np.std(per_epoch[e], ddof=1)) if len(per_epoch[e]) >= 2 else math.nan for e in epochs],
          'n': [len(per_epoch[e]) for e in epochs]}
