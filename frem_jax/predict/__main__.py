"""The predict command line: python -m frem_jax.predict --workdir=RUN --input=IMAGES --output=OUT (docs/predict.md)"""

import os

from absl import app
from absl import flags

from frem_jax import cli
from frem_jax import predict
from frem_jax.filenames import IOU_FILE

FLAGS = flags.FLAGS


def main(argv):
  cli.begin(argv)
  with cli.user_errors_exit():
    report = predict.predict_files(FLAGS.workdir, FLAGS.input or '', FLAGS.output, FLAGS.overlap, FLAGS.raw,
                           FLAGS.probabilities, FLAGS.masks or '', FLAGS.overlay,
                           FLAGS.source_dir or '', FLAGS.half_precision)
  print(f'masks: {FLAGS.output}')
  if report:
    miou = report['overall']['miou']
    print(f'mIoU over all images: {"n/a" if miou is None else f"{100 * miou:.2f} %"} '
          f'({os.path.join(FLAGS.output, IOU_FILE)})')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Run folder of python -m frem_jax.train (its best checkpoint is used).')
  flags.DEFINE_string('input', None, 'A PNG/TIFF image or a folder of them, any size (or give --source_dir).')
  flags.DEFINE_string('output', None, 'Folder for <stem>.png (and .npy, iou.json); created if needed.')
  flags.DEFINE_integer('overlap', None, 'Pixels shared by neighbouring tiles, in [0, tile size); '
                       f'default: the run\'s tile size // {predict.DEFAULT_OVERLAP_DIVISOR} (32 for 256² tiles).')
  flags.DEFINE_bool('raw', False, 'Write class indices as 8-bit grayscale PNGs instead of palette PNGs.')
  flags.DEFINE_bool('probabilities', False, 'Also write <stem>.npy: softmax float32 [H, W, K].')
  flags.DEFINE_bool('overlay', False, 'Also write <stem>_overlay.png: the input tinted by predicted class.')
  flags.DEFINE_string('masks', None, 'A mask or a folder of them with the images\' stems, valued as '
                      'the training masks (or class indices 0..K-1): also write iou.json.')
  flags.DEFINE_string('source_dir', None, 'Instead of --input and --masks: a folder laid out like the '
                      'run\'s training data; scores every image in it (iou.json).')
  flags.DEFINE_bool('half_precision', None, 'Half precision (true: bfloat16; on the CPU wing with oneDNN '
                    'its 3x3 and transposed convolutions only) or float32 (false) whatever the run trained in; by '
                    'default as the run did (its config\'s half_precision).')
  for name in ('workdir', 'output'):
    flags.mark_flag_as_required(name)
  app.run(main, flags_parser=cli.parse_flags)
