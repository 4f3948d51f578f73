"""A run's folder: its config, which a later run must match to resume there."""

import json
import os

import ml_collections

from frem_jax import files
from frem_jax.errors import UserError

from frem_jax.filenames import CONFIG_FILE
# Held by frem_jax.workdir_lock while a process writes into the folder.
LOCK_FILE = '.lock'

# Keys that may change when a run is resumed: training longer continues the same run, and
# moving the data (or its prepared copy), the layers' arithmetic or the sweep's size does not change
# it. A sweep's trial is a run with the sweep's whole config, and a trial cut off by a kill resumes
# under the resumed sweep's config: so every key that frem_jax.search.store lets a sweep change
# must be here too.
RESUMABLE_KEYS = ('num_epochs', 'dataset.source_dir', 'dataset.data_dir', 'model.layers', 'search.population',
                  'search.max_evals')


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (tuples become lists)."""
  return json.loads(config.to_json())


def upgrade(config_json: dict) -> dict:
  """A saved config in today's keys: the one place that knows the keys of older versions.

  Before `model.layers`, two keys chose the layers' arithmetic: 'xla' in
  `model.conv_impl` or `model.upconv_impl` meant flax's layers, 'cpu_kernel'
  the CPU wing's; any choice gives the same parameters. Before `half_precision`,
  every run computed in float32.
  """
  if 'half_precision' not in config_json:
    config_json = {**config_json, 'half_precision': False}
  model = config_json.get('model', {})
  if 'conv_impl' not in model and 'upconv_impl' not in model:
    return config_json
  model = dict(model)
  conv, upconv = model.pop('conv_impl', 'auto'), model.pop('upconv_impl', 'matmul')
  model.setdefault('layers', 'cpu' if conv == 'cpu_kernel' else 'flax' if 'xla' in (conv, upconv)
                   else 'auto')
  return {**config_json, 'model': model}


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was made with (`config.json`, upgraded); UserError if unreadable."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(upgrade(json.load(f)))
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is unreadable ({e}); restore it or train the run again') from e


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


_MISSING = '<missing>'


def _default_flat() -> dict:
  from configs import default  # pylint: disable=g-import-not-at-top
  return _flatten(config_to_json(default.get_config()))


def config_differences(old: dict, new: dict, resumable: tuple) -> list[tuple[str, object, object]]:
  """(dotted key, old value, new value) of every key of two JSON configs that differs, outside `resumable`.

  A key that `new` has and `old` lacks, set to its default (configs/default.py), is no difference:
  keys added to the project after a run was saved default to the behaviour the run had. Otherwise
  a key present on one side only shows '<missing>' on the other.
  """
  old_flat, new_flat = _flatten(upgrade(old)), _flatten(new)
  defaults = _default_flat()
  for k in set(new_flat) - set(old_flat):
    if k in defaults and new_flat[k] == defaults[k]:
      old_flat[k] = new_flat[k]
  return [(k, old_flat.get(k, _MISSING), new_flat.get(k, _MISSING))
          for k in sorted(set(old_flat) | set(new_flat))
          if k not in resumable and old_flat.get(k, _MISSING) != new_flat.get(k, _MISSING)]


def check_not_a_file(workdir: str, flag: str = '--workdir') -> None:
  """UserError if `workdir` is an existing file rather than a folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'{flag}={workdir} is an existing file; name a folder')


def check(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises UserError, touching nothing, if `workdir` is a file or holds a run of a different config.

  Keys in RESUMABLE_KEYS may differ.
  """
  check_not_a_file(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  new = config_to_json(config)
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f'{path} is unreadable ({e}); move it away or use a new --workdir') from e
    diffs = config_differences(old, new, RESUMABLE_KEYS)
    if diffs:
      shown = ', '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in diffs[:3]) + (' …' if len(diffs) > 3 else '')
      raise UserError(f'--workdir={workdir} holds a run with a different config ({shown}); '
                      'use a new --workdir to start another run, or the same config to resume')
  elif os.path.isdir(workdir) and [n for n in os.listdir(workdir)
                                   if n != LOCK_FILE and not files.is_temporary(n)]:
    raise UserError(f'--workdir={workdir} is not empty and holds no {CONFIG_FILE}; '
                    'use an empty or new folder')


def record(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `config` to `workdir/config.json` (after `check`)."""
  files.write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_to_json(config))
