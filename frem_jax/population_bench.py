"""Benchmark of population training (K runs in one vmapped train step); prints one JSON line.

Usage: python -m frem_jax.population_bench [--population=1,2,4] [--image_size=256] [--batch_size=4]
       [--steps=3] [--features=32,64,128,256,512] [--conv_impl=auto|xla|cpu_kernel]
Per K: compile seconds, median step seconds (after warm-up), member steps per second, trials
per hour for a trial of --steps_per_trial steps, and the compiled step's memory from XLA's
`memory_analysis()` (total and per member), also for the step with XLA's convolutions (what a
GPU/TPU runs) with --xla_memory. Members differ in B (FREM on), as in a (B, X) sweep.
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
from frem_jax import cpu_conv
from frem_jax import host_memory
from frem_jax import population
from frem_jax import steps
from frem_jax.unet import UNetSE


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {k: int(getattr(m, f'{k}_in_bytes')) for k in ('argument_size', 'output_size', 'alias_size', 'temp_size')}
  # Arguments (the donated states alias the outputs) + outputs not aliased + temporaries.
  out['total_bytes'] = out['argument_size'] + out['output_size'] - out['alias_size'] + out['temp_size']
  return out


def run_benchmark(populations, features, image_size, batch_size, num_steps, warmup, conv_impl='auto',
                  steps_per_trial=16000, xla_memory=True, num_classes=3) -> dict:
  """Times the population train step for each K; returns the JSON-able results."""
  shape = (image_size, image_size, 1)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch_size,) + shape), jnp.float32)
  masks = jnp.asarray(rng.integers(0, num_classes, (batch_size, image_size, image_size)), jnp.int32)
  idx = jnp.arange(batch_size, dtype=jnp.int32)
  results = []
  for k in populations:
    model = UNetSE(num_classes=num_classes, features=tuple(features), conv_impl=conv_impl)
    state = steps.create_train_state(model, jax.random.key(0, impl='rbg'), shape, 1e-3)
    hparams = population.stack([steps.make_hyperparams(min(features[-1], 1 + 100 * i), 632.0, 0.0)
                                for i in range(k)])
    keys = jnp.stack([jax.random.key(1, impl='rbg')] * k)
    step = population.jit_train_step(True, False)
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
    if xla_memory:  # XLA's convolutions, as on a GPU/TPU: compiled only, not run
      xla_model = UNetSE(num_classes=num_classes, features=tuple(features), conv_impl='xla')
      xla_states = population.stack([state.replace(apply_fn=xla_model.apply)] * k)
      xla_step = population.jit_train_step(True, False)
      row['xla_conv_memory'] = _memory(xla_step.lower(xla_states, images, masks, idx, hparams, keys).compile())
      row['xla_conv_memory_per_member_bytes'] = row['xla_conv_memory'].get('total_bytes', 0) / k
    results.append(row)
    del states
  return {
      'populations': results, 'features': list(features), 'image_size': image_size,
      'batch_size': batch_size, 'conv_impl': conv_impl, 'vmap_method': cpu_conv.VMAP_METHOD,
      'cpu_kernels_used': any(cpu_conv.uses_kernel(conv_impl, f, jnp.float32) for f in features),
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
  del argv
  host_memory.keep_freed_memory()  # as every entry point does (cli.begin)
  cpu_conv.VMAP_METHOD = FLAGS.vmap_method
  load_before = _load_average()
  result = run_benchmark([int(k) for k in FLAGS.population], [int(f) for f in FLAGS.features],
                         FLAGS.image_size, FLAGS.batch_size, FLAGS.steps, FLAGS.warmup, FLAGS.conv_impl,
                         FLAGS.steps_per_trial, FLAGS.xla_memory)
  result['load_average_before'] = load_before
  print(json.dumps(result))


if __name__ == '__main__':
  flags.DEFINE_list('population', ['1', '2', '4'], 'Population sizes K to time.')
  flags.DEFINE_integer('image_size', 256, 'Image height = width.')
  flags.DEFINE_integer('batch_size', 4, 'Training batch (shared by the members).')
  flags.DEFINE_integer('steps', 3, 'Timed steps per K.')
  flags.DEFINE_integer('warmup', 1, 'Untimed steps after compilation.')
  flags.DEFINE_list('features', ['32', '64', '128', '256', '512'], 'Encoder widths.')
  flags.DEFINE_enum('conv_impl', 'auto', list(cpu_conv.IMPLS), '3x3 convolutions (model.conv_impl).')
  flags.DEFINE_enum('vmap_method', cpu_conv.VMAP_METHOD, ['sequential', 'sequential_unrolled'],
                    "How the CPU kernels' custom calls run under vmap.")
  flags.DEFINE_integer('steps_per_trial', 16000,
                       'Steps of one trial, for trials per hour (default: 2000 epochs of 8 steps, the synthetic data).')
  flags.DEFINE_bool('xla_memory', True, "Also compile (not run) the step with XLA's convolutions for its memory.")
  app.run(main, flags_parser=cli.parse_flags)
