"""The search spaces of the paper's sweeps: (B, X) for FREM, λ for SuperVision."""

import ml_collections
from hyperopt import hp

from frem_jax.config_validation import validate_config
from frem_jax.errors import UserError

SPACES = ('frem', 'supervision')
PAPER_MAX_EVALS = {'frem': 50, 'supervision': 15}


def resolve(config: ml_collections.ConfigDict) -> dict:
  """The searched ranges and number of trials, checked against the model; UserError names a bad one."""
  validate_config(config)
  s = config.search
  if s.space not in SPACES:
    raise UserError(f'search.space={s.space!r} must be one of {SPACES}')
  max_evals = PAPER_MAX_EVALS[s.space] if s.max_evals is None else s.max_evals
  if max_evals < 1:
    raise UserError(f'search.max_evals={max_evals} must be >= 1')
  if s.space == 'frem':
    channels = config.model.features[-1]
    lo, hi = s.num_selected_range
    hi = hi or channels
    if not (1 <= lo <= hi <= channels):
      raise UserError(f'search.num_selected_range (B)=({lo}, {hi}) must satisfy 1 <= lo <= hi <= '
                      f'{channels}, the channels of the deepest stage (model.features[-1])')
    xlo, xhi = s.factor_range
    if xlo <= 0 or xlo > xhi:
      raise UserError(f'search.factor_range (X)=({xlo}, {xhi}) must satisfy 0 < lo <= hi')
    ranges = {'num_selected': [int(lo), int(hi)], 'factor': [float(xlo), float(xhi)]}
  else:
    wlo, whi = s.weight_range
    if not 0.0 <= wlo <= whi <= 1.0:
      raise UserError(f'search.weight_range (λ)=({wlo}, {whi}) must satisfy 0 <= lo <= hi <= 1')
    ranges = {'weight': [float(wlo), float(whi)]}
  return {'space': s.space, 'ranges': ranges, 'max_evals': int(max_evals), 'seed': int(s.seed),
          'n_startup_jobs': int(s.n_startup_jobs)}


def hyperopt_space(resolved: dict) -> dict:
  """The hyperopt expression of the space."""
  r = resolved['ranges']
  if resolved['space'] == 'frem':
    return {'num_selected': hp.uniformint('num_selected', *r['num_selected']),
            'factor': hp.uniform('factor', *r['factor'])}
  return {'weight': hp.uniform('weight', *r['weight'])}


def plain_values(values: dict) -> dict:
  """Trial values as plain JSON numbers (B an int)."""
  return {k: int(round(float(v))) if k == 'num_selected' else float(v) for k, v in values.items()}


def trial_config(config: ml_collections.ConfigDict, space: str, values: dict) -> ml_collections.ConfigDict:
  """`config` with a trial's values: B and X with FREM on, or λ with SuperVision on and FREM off."""
  trial = config.copy_and_resolve_references()
  if space == 'frem':
    trial.frem.enabled = True
    trial.frem.num_selected = int(values['num_selected'])
    trial.frem.factor = float(values['factor'])
  else:
    trial.frem.enabled = False
    trial.eval.frem_at_test = False
    trial.supervision.enabled = True
    trial.supervision.weight = float(values['weight'])
  return trial
