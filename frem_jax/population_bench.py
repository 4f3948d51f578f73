"""Benchmark of population training (K runs in one vmapped train step); prints one JSON line.

Usage: python -m frem_jax.population_bench [--config=configs/default.py] [--config.<key>=value ...]
       [--population=1,2,4] [--steps=3] [--warmup=1] [--vmap_method=sequential_unrolled]
Per K: compile seconds, median step seconds (after warm-up), member steps per second, trials
per hour for a trial of --steps_per_trial steps, and the compiled step's memory from XLA's
`memory_analysis()` (total and per member), also for the step with flax's layers (what a
GPU/TPU runs) with --xla_memory. The model is the config's (`build_model`: widths from
`model.features`, layers from `model.layers`), at `dataset.image_size`² and `batch_size`.
Members differ in B (FREM on), as in a (B, X) sweep.
"""

import json
import platform
import resource
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from frem_jax import cli
from frem_jax import datasets
from frem_jax import steps
from frem_jax.build import build_model
from frem_jax.config_validation import validate_config
from frem_jax.cpu import benchmark
from frem_jax.cpu import ffi
from frem_jax.train import population


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {k: int(getattr(m, f'{k}_in_bytes')) for k in ('argument_size', 'output_size', 'alias_size', 'temp_size')}
  # Arguments (the donated states alias the outputs) + outputs not aliased + temporaries.
  out['total_bytes'] = out['argument_size'] + out['output_size'] - out['alias_size'] + out['temp_size']
  return out


def run_benchmark(model, populations, image_size, batch_size, num_steps, warmup,
                  steps_per_trial=16000, xla_model=None) -> dict:
  """Times `model`'s population train step for each K; returns the JSON-able results.

  `xla_model`, if given, is the same model with flax's layers: its step is compiled (not run)
  for its memory, as a GPU/TPU would run it.
  """
  features, num_classes = tuple(model.features), model.num_classes
  shape = (image_size, image_size, 1)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch_size,) + shape), jnp.float32)
  masks = jnp.asarray(rng.integers(0, num_classes, (batch_size, image_size, image_size)), jnp.int32)
  idx = jnp.arange(batch_size, dtype=jnp.int32)
  results = []
  for k in populations:
    state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), shape, 1e-3)
    hparams = population.stack([steps.make_hyperparams(min(features[-1], 1 + 100 * i), 632.0, 0.0)
                                for i in range(k)])
    keys = jnp.stack([jax.random.key(1, impl='rbg')] * k)
    step = population.jit_train_step(True, False, features[-1])
    states = population.stack([state] * k)
    t0 = time.perf_counter()
    compiled = step.lower(states, images, masks, idx, hparams, keys).compile()
    compile_s = time.perf_counter() - t0
    memory = _memory(compiled)
    times = []
    for i in range(warmup + num_steps):
      t0 = time.perf_counter()
      states, m = compiled(states, images, masks, idx, hparams, keys)
      jax.block_until_ready(m['loss'])
      if i >= warmup:
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    row = {'population': k, 'compile_s': compile_s, 'step_s': times, 'median_step_s': median,
           'member_steps_per_s': k / median, 'trials_per_hour': 3600 * k / (median * steps_per_trial),
           'memory': memory, 'memory_per_member_bytes': memory.get('total_bytes', 0) / k}
    if xla_model is not None:  # flax's layers, as on a GPU/TPU: compiled only, not run
      xla_states = population.stack([state.replace(apply_fn=xla_model.apply)] * k)
      xla_step = population.jit_train_step(True, False, features[-1])
      row['xla_conv_memory'] = _memory(xla_step.lower(xla_states, images, masks, idx, hparams, keys).compile())
      row['xla_conv_memory_per_member_bytes'] = row['xla_conv_memory'].get('total_bytes', 0) / k
    results.append(row)
    del states
  return {
      'populations': results, 'features': list(features), 'image_size': image_size,
      'batch_size': batch_size, 'vmap_method': ffi.VMAP_METHOD,
      'cpu_kernels_used': benchmark.kernels_used(model),
      'steps_per_trial': steps_per_trial, 'warmup': warmup, 'steps': num_steps,
      'framework': f'jax {jax.__version__}', 'python': platform.python_version(),
      'device': str(jax.devices()[0]), 'load_average': list(_load_average()),
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def _load_average():
  try:
    with open('/proc/loadavg') as f:
      return [float(x) for x in f.read().split()[:3]]
  except OSError:
    return []


FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv, times_compiles=True)  # its compile_s must be a compile, not a load from the cache
  with cli.user_errors_exit():
    cli.check_at_least('steps', FLAGS.steps, 1)
    cli.check_at_least('steps_per_trial', FLAGS.steps_per_trial, 1)
    cli.check_at_least('warmup', FLAGS.warmup, 0)
    populations = cli.positive_ints('population', FLAGS.population, 'sizes K')
    config = cli.config_from_flag('config')
    validate_config(config)
    num_classes = len(datasets.class_names(config.dataset))
    model = build_model(config, num_classes)
    xla_model = None
    if FLAGS.xla_memory:
      flax_config = config.copy_and_resolve_references()
      with flax_config.unlocked():
        flax_config.model.layers = 'flax'
      xla_model = build_model(flax_config, num_classes)
    ffi.VMAP_METHOD = FLAGS.vmap_method
    load_before = _load_average()
    result = run_benchmark(model, populations, config.dataset.image_size, config.batch_size, FLAGS.steps,
                           FLAGS.warmup, FLAGS.steps_per_trial, xla_model)
  result['layers'] = config.model.layers
  result['load_average_before'] = load_before
  print(json.dumps(result))


if __name__ == '__main__':
  cli.define_config_flag(default=cli.default_config_file())
  flags.DEFINE_list('population', ['1', '2', '4'], 'Population sizes K to time.')
  flags.DEFINE_integer('steps', 3, 'Timed steps per K.')
  flags.DEFINE_integer('warmup', 1, 'Untimed steps after compilation.')
  flags.DEFINE_enum('vmap_method', 'sequential_unrolled', ['sequential', 'sequential_unrolled'],
                    "How the CPU kernels' custom calls run under vmap (frem_jax.cpu.ffi.VMAP_METHOD).")
  flags.DEFINE_integer('steps_per_trial', 16000,
                       'Steps of one trial, for trials per hour (default: 2000 epochs of 8 steps, the synthetic data).')
  flags.DEFINE_bool('xla_memory', True, "Also compile (not run) the step with flax's layers for its memory.")
  app.run(main, flags_parser=cli.parse_flags)
