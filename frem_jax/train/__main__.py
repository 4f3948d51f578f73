"""Trains and evaluates one run: python -m frem_jax.train --config=configs/demo.py --workdir=runs/demo"""

import os

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import train
from frem_jax.config_validation import validate_config
from frem_jax.filenames import RESULTS_FILE

FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    config = cli.config_from_flag('config')
    validate_config(config)  # before train_and_evaluate loads JAX: a bad value is refused at once
    results = train.train_and_evaluate(config, FLAGS.workdir)
  print(train.format_results(results))
  print(f'results: {os.path.join(FLAGS.workdir, RESULTS_FILE)}')


if __name__ == '__main__':
  cli.define_config_flag()
  flags.DEFINE_string('workdir', None, 'Folder for checkpoints, logs and results.json.')
  flags.mark_flag_as_required('workdir')
  app.run(main, flags_parser=cli.parse_flags)
