r"""movinet-export: a trained MoViNet -> SavedModel, TFLite, labels.

  movinet-export --model_dir=runs/quickstart --output_dir=exports/quickstart
  movinet-export --keras=my_model.keras --labels=labels.txt \
      --image_size=172 --output_dir=exports/mine

From a training `--model_dir` (its `final_model.keras`, or with
`--weights=best` its `best_model.keras`; the class names from its
`run.json`), or a `.keras` file (class names from `--labels`, one a line,
else `class_0`, `class_1`, ...). `--output_dir` must be new or empty; it gets
`saved_model/`, `model.tflite`, `labels.txt` and `export.json`
(`trainer.export.exporter`), or nothing if the export fails.

Exit status: 0 exported; 1 bad input or an export that failed its parity
check (one line on stderr says what).
"""

import os
import sys

from absl import flags
from absl import logging
import keras
import tensorflow as tf

from trainer import command_line
from trainer.export import exporter
import trainer.model  # noqa: F401  # pylint: disable=unused-import
# (registers the layers and the loss `load_model` needs)
from trainer.training import run_identity

FLAGS = flags.FLAGS
WEIGHTS = {'final': 'final_model.keras', 'best': 'best_model.keras'}


def _define_flags() -> None:
  """Defines the flags; called by `run` only, so importing defines none."""
  flags.DEFINE_string('model_dir', None, 'A movinet-train --model_dir.')
  flags.DEFINE_enum('weights', 'final', list(WEIGHTS),
                    'With --model_dir: the model at the end of training, or '
                    'at its best validation accuracy.')
  flags.DEFINE_string('keras', None, 'A .keras model file (instead of '
                      '--model_dir).')
  flags.DEFINE_string('labels', None, 'A text file of class names, one a '
                      'line, in label order.')
  flags.DEFINE_string('output_dir', None, 'A new (or empty) folder for the '
                      'export.')
  flags.DEFINE_integer('image_size', 172, 'Height and width of the TFLite '
                       "model's frames.")
  flags.DEFINE_integer('num_frames', 8, "Frames of a base model's TFLite "
                       'model (a stream model takes one frame per call).')
  flags.mark_flag_as_required('output_dir')


def _read_labels(path: str) -> list[str]:
  if not tf.io.gfile.exists(path):
    raise ValueError(f'--labels={path} does not exist.')
  with tf.io.gfile.GFile(path) as f:
    return [line.strip() for line in f if line.strip()]


def _source():
  """The model and its class names the flags name.

  Raises:
    ValueError: no source, two sources, or a missing file (named).
  """
  if bool(FLAGS.model_dir) == bool(FLAGS.keras):
    raise ValueError('give one model: --model_dir (a training run) or '
                     '--keras (a .keras file)')
  path = FLAGS.keras or os.path.join(FLAGS.model_dir, WEIGHTS[FLAGS.weights])
  if not tf.io.gfile.exists(path):
    raise ValueError(f'{path} does not exist; '
                     + ('train first, or choose --weights'
                        if FLAGS.model_dir else 'check --keras'))
  model = keras.saving.load_model(path)
  identity = run_identity.read(FLAGS.model_dir) if FLAGS.model_dir else None
  if FLAGS.labels:
    labels = _read_labels(FLAGS.labels)
  elif identity and identity.label_names:
    labels = list(identity.label_names)
  else:
    labels = [f'class_{index}' for index in range(model.num_classes)]
  return model, labels


def main(argv) -> None:
  if len(argv) > 1:
    sys.exit(f'movinet-export: error: unexpected arguments {argv[1:]}')
  try:
    exporter.check_output_dir(FLAGS.output_dir)  # before the slow part
    model, labels = _source()
    info = exporter.export(model, labels, FLAGS.output_dir,
                           image_size=FLAGS.image_size,
                           num_frames=FLAGS.num_frames)
  except (ValueError, OSError) as error:
    message = str(error).strip().splitlines()[0].rstrip('.')
    sys.exit(f'movinet-export: error: {message}')
  logging.info('%s %s, %d classes, parity %s: %s', info.model_id,
               info.variant, len(info.labels), info.parity, FLAGS.output_dir)


def run() -> None:
  """The `movinet-export` console script."""
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
