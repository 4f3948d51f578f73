"""Checks a config before anything is built or compiled, with one-line errors."""

import ml_collections

from frem_jax.datasets.names import NAMES as DATASETS
from frem_jax.errors import UserError

# model.layers: 'auto' (the CPU wing's layers on the CPU backend, flax's elsewhere), 'flax', 'cpu'.
LAYERS = ('auto', 'flax', 'cpu')
NORMS = ('batch_renorm', 'batch_norm')
FREM_MODES = ('random', 'fixed')
FREM_REDRAWS = ('epoch', 'step')
PARALLELISM = ('jit', 'pmap')


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad value in `config`."""
  features = tuple(config.model.features)
  _require(len(features) >= 1 and all(_is_int(f) and f > 0 for f in features),
           f'model.features={features} must be a non-empty tuple of positive integers')
  channels = features[-1]
  for key in ('num_epochs', 'batch_size', 'eval_batch_size', 'eval_every_epochs',
              'checkpoint_every_epochs'):
    value = config[key]
    _require(_is_int(value) and value >= 1, f'{key}={value!r} must be an integer >= 1')
  _require(config.parallelism in PARALLELISM,
           f'parallelism={config.parallelism!r} must be one of {PARALLELISM}')
  _require(_is_int(config.num_devices) and config.num_devices >= 0,
           f'num_devices={config.num_devices!r} must be an integer >= 0 (0 = all local devices)')
  half = config.get('half_precision', False)
  _require(isinstance(half, bool), f'half_precision={half!r} must be True or False')
  _require(config.learning_rate > 0, f'learning_rate={config.learning_rate} must be > 0')
  _require(config.model.layers in LAYERS, f'model.layers={config.model.layers!r} must be one of {LAYERS}')
  _require(config.model.norm in NORMS, f'model.norm={config.model.norm!r} must be one of {NORMS}')
  _require(_is_int(config.model.se_reduction) and config.model.se_reduction >= 1,
           f'model.se_reduction={config.model.se_reduction!r} must be an integer >= 1')
  _require(config.model.renorm_r_max >= 1, f'model.renorm_r_max={config.model.renorm_r_max} must be >= 1')
  _require(config.model.renorm_d_max >= 0, f'model.renorm_d_max={config.model.renorm_d_max} must be >= 0')

  size = config.dataset.image_size
  poolings = len(features) - 1
  _require(_is_int(size) and size > 0, f'dataset.image_size={size!r} must be a positive integer')
  _require(size % 2**poolings == 0,
           f'dataset.image_size={size} is not divisible by 2**{poolings}={2**poolings} '
           f'(model.features={features} has {poolings} poolings); use a multiple of {2**poolings} '
           'or fewer stages')
  _require(config.dataset.name in DATASETS,
           f'dataset.name={config.dataset.name!r} is not one of {DATASETS}')
  classes = config.dataset.classes
  _require(isinstance(classes, (tuple, list)) and all(
      isinstance(c, (tuple, list)) and len(c) == 2 and _is_int(c[0]) and isinstance(c[1], str) for c in classes),
           f'dataset.classes={classes!r} must be (mask value, class name) pairs, e.g. '
           "--config.dataset.classes=\"((0, 'background'), (255, 'membrane'))\"")

  b = config.frem.num_selected
  _require(_is_int(b) and 0 <= b <= channels,
           f'frem.num_selected (B)={b!r} must be an integer in [0, {channels}], the channels of '
           f'the deepest stage (model.features[-1]={channels})')
  _require(config.frem.factor > 0, f'frem.factor (X)={config.frem.factor} must be > 0')
  _require(not config.eval.frem_at_test or config.frem.enabled,
           'eval.frem_at_test=True needs frem.enabled=True (it evaluates with FREM kept on)')
  overlap = config.eval.full_section_overlap
  _require(_is_int(overlap) and overlap >= 0, f'eval.full_section_overlap={overlap!r} must be an integer >= 0')
  if config.dataset.name == 'drosophila_vnc':  # the only dataset it is used for
    _require(overlap < size, f'eval.full_section_overlap={overlap} must be below dataset.image_size={size}, '
             'the window size')
  _require(config.frem.mode in FREM_MODES, f'frem.mode={config.frem.mode!r} must be one of {FREM_MODES}')
  redraw = config.frem.redraw
  _require(redraw in FREM_REDRAWS, f'frem.redraw={redraw!r} must be one of {FREM_REDRAWS}')
  _require(redraw == 'epoch' or config.frem.mode == 'random',
           f"frem.redraw={redraw!r} needs frem.mode='random' (frem.mode='fixed' keeps one set of "
           "channels for the whole run, so there is nothing to re-draw)")
  w = config.supervision.weight
  _require(0.0 <= w <= 1.0, f'supervision.weight (λ)={w} must be in [0, 1]')
  eta, min_epochs = config.search.reduction_factor, config.search.min_epochs
  _require(_is_int(eta) and eta >= 2,
           f'search.reduction_factor (η)={eta!r} must be an integer >= 2 (each rung keeps the top 1/η)')
  _require(min_epochs is None or (_is_int(min_epochs) and min_epochs >= 1),
           f'search.min_epochs={min_epochs!r} must be an integer >= 1, or None (num_epochs / η^4)')
  _require(not config.search.halving or min_epochs is None or min_epochs <= config.num_epochs,
           f'search.min_epochs={min_epochs} must be <= num_epochs={config.num_epochs} (the first rung '
           'of search.halving); lower it or train longer')
  k = config.search.get('population', 1)
  _require(_is_int(k) and k >= 1, f'search.population={k!r} must be an integer >= 1 (1 = one trial at a time)')
  _require(k == 1 or not config.search.get('halving', False),
           f'search.population={k} and search.halving cannot be combined; use one of them '
           '(search.population=1 or search.halving=False)')
