"""The TPE search's command line: python -m frem_jax.search --config=CONFIG --workdir=DIR [--plot_only]"""

import os

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import search
from frem_jax.errors import UserError
from frem_jax.filenames import SEARCH_FIGURE
from frem_jax.filenames import TRIALS_FILE
from frem_jax.search import plot as search_plot
from frem_jax.search import space as search_space
from frem_jax.search import store as search_store

FLAGS = flags.FLAGS
RAY_FLAGS = ('ray_address', 'max_concurrent_trials', 'cpus_per_trial', 'gpus_per_trial')


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    if FLAGS.plot_only:
      print(search_plot.plot(search_store.load(FLAGS.workdir), FLAGS.workdir))
      return
    stray = [f'--{n}' for n in RAY_FLAGS if FLAGS[n].present]
    if stray and FLAGS.backend != 'ray':
      raise UserError(f'{stray[0]} is for --backend=ray; add --backend=ray or leave it out')
    if FLAGS.backend == 'ray':
      from frem_jax.search import ray_tune  # pylint: disable=g-import-not-at-top  # Ray is an optional extra
      record = ray_tune.run_search(
          cli.config_from_flag('config'), FLAGS.workdir, ray_address=FLAGS.ray_address,
          max_concurrent_trials=FLAGS.max_concurrent_trials, cpus_per_trial=FLAGS.cpus_per_trial,
          gpus_per_trial=FLAGS.gpus_per_trial)
    else:
      config = cli.config_from_flag('config')
      # Bad settings and a sweep folder of another config or space are refused before JAX loads.
      search_store.open_record(FLAGS.workdir, config, search_space.resolve(config))
      record = search.run_search(config, FLAGS.workdir)
  best = search_store.best_trial(record)
  if best:
    print(f'best trial {best["number"]}: {best["values"]}, val mIoU {100 * best["val_miou"]:.2f} %, '
          f'test mIoU {100 * best["test_miou"]:.2f} %')
  print(f'trials: {os.path.join(FLAGS.workdir, TRIALS_FILE)}; '
        f'figure: {os.path.join(FLAGS.workdir, SEARCH_FIGURE)}')


if __name__ == '__main__':
  cli.define_config_flag(required=False)  # --plot_only needs none
  flags.DEFINE_string('workdir', None, 'Folder of the sweep: trials.json, best.json, search.png, trial_NNN/.')
  flags.DEFINE_bool('plot_only', False, 'Only redraw DIR/search.png from DIR/trials.json.')
  flags.DEFINE_enum('backend', 'local', ['local', 'ray'],
                    "local: one trial per local device; ray: Ray Tune (pip install -e '.[ray]').")
  flags.DEFINE_string('ray_address', None, "--backend=ray: the cluster to join ('auto' or HOST:PORT); "
                      'unset: start Ray on this machine.')
  flags.DEFINE_integer('max_concurrent_trials', 0, '--backend=ray: trials at once; 0: as many as fit.')
  flags.DEFINE_float('cpus_per_trial', 1.0, '--backend=ray: CPUs Ray reserves for each trial.')
  flags.DEFINE_integer('gpus_per_trial', None, '--backend=ray: GPUs per trial; unset: 1 if the cluster has GPUs.')
  flags.mark_flag_as_required('workdir')
  flags.register_multi_flags_validator(
      ['config', 'plot_only'], lambda f: f['plot_only'] or f['config'] is not None,
      message='--config is required (unless --plot_only)')
  app.run(main, flags_parser=cli.parse_flags)
