"""The report's command line: python -m frem_jax.report --runs NAME=DIR ... [--search=DIR ...] --out=OUT"""

import os

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import report
from frem_jax.filenames import REPORT_MD

FLAGS = flags.FLAGS


def main(argv):
  # `--runs a=X b=Y` leaves b=Y as a positional argument: take those too.
  specs = list(FLAGS.runs or []) + cli.begin(argv, positional=True)
  with cli.user_errors_exit():
    # Parsed first, on its own line: `report.write_report(...)` looks up write_report, which loads
    # lib.py and JAX, before it evaluates its arguments.
    runs = report.parse_runs(specs)
    report.write_report(runs, FLAGS.search or [], FLAGS.out, FLAGS.num_images)
  print(f'report: {os.path.join(FLAGS.out, REPORT_MD)}')


if __name__ == '__main__':
  flags.DEFINE_multi_string('runs', [], 'NAME=DIR of a finished run (baseline, supervision, frem, fixed), '
                            'or NAME=DIR1,DIR2,... for several runs (seeds) of a method.')
  flags.DEFINE_multi_string('search', [], 'Folder of a TPE search (trials.json).')
  flags.DEFINE_string('out', None, 'Folder for report.md, report.json and the figures.')
  flags.DEFINE_integer('num_images', 3, 'Test images in the qualitative panels (Figs. 5/6).')
  flags.mark_flag_as_required('out')
  app.run(main, flags_parser=cli.parse_flags)
