"""Benchmark of the train and inference steps of a config's model; prints one JSON line.

Usage: python -m frem_jax.bench [--config=configs/default.py] [--config.<key>=value ...]
       [--batch_sizes=1,4,8] [--infer_batch_sizes=8] [--steps=5] [--warmup=2]
The default config is the paper's model at 256² (`dataset.image_size`); B and X
come from `frem.num_selected` and `frem.factor`, the layers from `model.layers`
(frem_jax/cpu/benchmark.py times them), the precision from `half_precision`; the JSON
names the precision and the layers that ran ('precision', 'layers_used', 'cpu_kernels_used', 'conv3x3', 'onednn').
"""

import json

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import datasets
from frem_jax.build import build_model
from frem_jax.config_validation import validate_config
from frem_jax.cpu import benchmark
from frem_jax.cpu import malloc
from frem_jax.errors import UserError

FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv, times_compiles=True)  # its compile_s must be a compile, not a load from the cache
  with cli.user_errors_exit():
    if FLAGS.steps < 5:
      raise UserError(f'--steps={FLAGS.steps}: medians need at least 5 timed steps')
    cli.check_at_least('warmup', FLAGS.warmup, 0)
    batch_sizes = cli.positive_ints('batch_sizes', FLAGS.batch_sizes, 'batch sizes')
    infer_batch_sizes = cli.positive_ints('infer_batch_sizes', FLAGS.infer_batch_sizes, 'batch sizes')
    config = cli.config_from_flag('config')
    validate_config(config)
    model = build_model(config, len(datasets.class_names(config.dataset)))
    result = benchmark.run_benchmark(
        model, config.dataset.image_size, batch_sizes, infer_batch_sizes, FLAGS.steps, FLAGS.warmup, FLAGS.in_channels,
        config.frem.num_selected, config.frem.factor)
  result['layers'] = config.model.layers
  result['malloc_tuned'] = malloc.is_tuned()
  print(json.dumps(result))


if __name__ == '__main__':
  cli.define_config_flag(default=cli.default_config_file())
  flags.DEFINE_list('batch_sizes', ['1', '4', '8'], 'Training batch sizes to time.')
  flags.DEFINE_list('infer_batch_sizes', ['8'], 'Inference batch sizes to time.')
  flags.DEFINE_integer('steps', 5, 'Timed steps per batch size (>= 5 for a median).')
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
  flags.DEFINE_integer('in_channels', 1, 'Input channels.')
  app.run(main, flags_parser=cli.parse_flags)
