"""The TPE search's command line: python -m frem_jax.search --config=CONFIG --workdir=DIR [--plot_only]"""

import os

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import search
from frem_jax.filenames import SEARCH_FIGURE
from frem_jax.filenames import TRIALS_FILE
from frem_jax.search import plot as search_plot
from frem_jax.search import store as search_store

FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    if FLAGS.plot_only:
      print(search_plot.plot(search_store.load(FLAGS.workdir), FLAGS.workdir))
      return
    record = search.run_search(cli.config_from_flag('config'), FLAGS.workdir)
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
  flags.mark_flag_as_required('workdir')
  flags.register_multi_flags_validator(
      ['config', 'plot_only'], lambda f: f['plot_only'] or f['config'] is not None,
      message='--config is required (unless --plot_only)')
  app.run(main, flags_parser=cli.parse_flags)
