"""Asynchronous successive halving (ASHA, Li et al. 2020): which trial goes on to its next rung.

Pure Python, no JAX: the sweep (`search_halving`) trains a trial to a rung, reports its
score here, and asks here what to train next. The rules:

- Rungs at `min_epochs · η^k` epochs (η = `reduction_factor`) up to `num_epochs / η`, and a
  last rung at `num_epochs`. A trial is scored at a rung by its best validation mIoU so far.
- A trial recorded at rung k is promotable (to rung k + 1) while fewer than
  max(1, floor(n / η)) of the n results recorded at rung k are strictly better than its
  own, and it was not promoted from rung k before. This is Li et al.'s top-floor(n/η)
  rule with two stated choices:
  - ties go on together (a rank counts only strictly better results, as Ray Tune's
    ASHAScheduler continues a result equal to its cutoff);
  - while a rung holds fewer than η results its best one is promotable (Li et al. would
    pause it until the rung holds η; Ray continues the first result at an empty rung), so
    a small sweep always trains at least one trial to `num_epochs`.
- On reaching a rung a promotable trial goes on at once; any other stops there
  ("stopped": paused, keeping its checkpoint). Nothing ever waits for a rung to fill.
- Asked for work, the scheduler first promotes a stopped trial that has become promotable
  as its rung grew (the highest rung first, then the best score, then the lowest trial
  number); only if there is none does the sweep start a new trial.
- A failed trial is never promoted; the results it recorded before failing stay (they
  were measured), and a trial that fails before its first rung records none.

The state is a function of the trials' records (`from_trials`), so a killed sweep
resumes with the same decisions.
"""

import math
from typing import Iterable, Optional

CONTINUE, STOP, FINISH = 'continue', 'stop', 'finish'
# Halvings below num_epochs when search.min_epochs is None: five rungs in all.
DEFAULT_HALVINGS = 4


def default_min_epochs(num_epochs: int, reduction_factor: int) -> int:
  """`search.min_epochs` = None: num_epochs / η^4 (at least 1), e.g. 24 epochs of 2000 for η = 3."""
  return max(1, num_epochs // reduction_factor**DEFAULT_HALVINGS)


def rung_epochs(min_epochs: int, reduction_factor: int, num_epochs: int) -> tuple:
  """The rungs' epochs: min_epochs, then min_epochs · η^k up to num_epochs / η, then num_epochs.

  A rung above num_epochs / η is left out, so that every step up trains at least η times
  as long: 24, 72, 216, 648, 2000 for (24, 3, 2000), not … 648, 1944, 2000.
  """
  if min_epochs < 1 or reduction_factor < 2 or min_epochs > num_epochs:
    raise ValueError(f'no rungs for min_epochs={min_epochs}, η={reduction_factor}, num_epochs={num_epochs}')
  rungs = [min_epochs] if min_epochs < num_epochs else []
  while rungs and rungs[-1] * reduction_factor * reduction_factor <= num_epochs:
    rungs.append(rungs[-1] * reduction_factor)
  return tuple(rungs) + (num_epochs,)


class Asha:
  """The rungs' results and who was promoted: `report` on reaching a rung, `promotion` when asking for work."""

  def __init__(self, min_epochs: int, reduction_factor: int, num_epochs: int):
    self.reduction_factor = reduction_factor
    self.rungs = rung_epochs(min_epochs, reduction_factor, num_epochs)
    self._scores = [{} for _ in self.rungs]  # rung -> {trial: score}
    self._promoted = [set() for _ in self.rungs]  # rung -> trials promoted from it
    self._failed = set()

  def next_rung(self, epochs: int) -> int:
    """The epochs of the first rung above `epochs` (a trial that trained `epochs` trains to it next)."""
    return next(r for r in self.rungs if r > epochs)

  def report(self, trial: int, epochs: int, score: float) -> str:
    """Records `trial`'s `score` at the rung of `epochs`; CONTINUE (promoted), STOP, or FINISH (last rung)."""
    k = self.rungs.index(epochs)
    if trial in self._scores[k]:
      raise ValueError(f'trial {trial} was already recorded at rung {k} ({epochs} epochs)')
    if not math.isfinite(score):
      raise ValueError(f'trial {trial}: score {score} at {epochs} epochs is not finite')
    self._scores[k][trial] = float(score)
    if k == len(self.rungs) - 1:
      return FINISH
    if self._promotable(trial, k):
      self._promoted[k].add(trial)
      return CONTINUE
    return STOP

  def fail(self, trial: int) -> None:
    """`trial` failed: it is never promoted; its recorded results stay."""
    self._failed.add(trial)

  def promotion(self) -> Optional[tuple]:
    """(trial, epochs to train to) of a stopped trial that became promotable, now marked promoted; or None."""
    for k in reversed(range(len(self.rungs) - 1)):
      candidates = [t for t in self._scores[k] if self._promotable(t, k)]
      if candidates:
        trial = min(candidates, key=lambda t: (-self._scores[k][t], t))
        self._promoted[k].add(trial)
        return trial, self.rungs[k + 1]
    return None

  def _promotable(self, trial: int, k: int) -> bool:
    if trial in self._promoted[k] or trial in self._failed:
      return False
    scores = self._scores[k]
    better = sum(s > scores[trial] for s in scores.values())
    return better < max(1, math.floor(len(scores) / self.reduction_factor))

  def state(self) -> dict:
    """The whole state as plain data (for comparing a rebuilt scheduler with a live one)."""
    return {'rungs': list(self.rungs),
            'scores': [dict(sorted(s.items())) for s in self._scores],
            'promoted': [sorted(p) for p in self._promoted], 'failed': sorted(self._failed)}

  @classmethod
  def from_trials(cls, entries: Iterable[dict], min_epochs: int, reduction_factor: int,
                  num_epochs: int) -> 'Asha':
    """The scheduler of a sweep rebuilt from its `trials.json` entries.

    An entry's `rung_scores[k]` is its score at rung k; it was promoted from every rung below
    its last one, and from its last one too while its status is 'running' (it is training
    towards the next). 'stopped' entries are paused at their last rung, 'fail' ones failed.
    """
    asha = cls(min_epochs, reduction_factor, num_epochs)
    for entry in entries:
      trial, scores = entry['number'], entry.get('rung_scores') or []
      for k, score in enumerate(scores):
        asha._scores[k][trial] = float(score)
        if k < len(scores) - 1 or (entry['status'] == 'running' and k < len(asha.rungs) - 1):
          asha._promoted[k].add(trial)
      if entry['status'] == 'fail':
        asha._failed.add(trial)
    return asha


def simulate(asha: Asha, curves: dict, max_evals: int) -> list:
  """A one-worker sweep over known learning curves; returns its events.

  `curves[trial]` lists the validation mIoU after epochs 1, 2, …, and ends early (or holds
  None at the failing epoch) for a trial that fails; trials start in number order. Events:
  (trial, epochs, score, decision) with decision CONTINUE/STOP/FINISH, or
  (trial, epochs, None, 'fail'). The reference for the sweep's own decisions in tests.
  """
  events, queue, started = [], [], 0
  while True:
    if queue:
      trial, target = queue.pop(0)
    else:
      promoted = asha.promotion()
      if promoted:
        trial, target = promoted
      elif started < max_evals:
        trial, target, started = started, asha.rungs[0], started + 1
      else:
        return events
    curve = curves[trial][:target]
    if len(curve) < target or any(v is None for v in curve):
      failed_at = next((i + 1 for i, v in enumerate(curve) if v is None), len(curve) + 1)
      asha.fail(trial)
      events.append((trial, failed_at, None, 'fail'))
      continue
    score = max(curve)
    decision = asha.report(trial, target, score)
    events.append((trial, target, score, decision))
    if decision == CONTINUE:
      queue.append((trial, asha.next_rung(target)))
