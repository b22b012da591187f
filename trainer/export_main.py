r"""movinet-export: a MoViNet -> SavedModel, TFLite (float, int8), labels.

  movinet-export --model_dir=runs/quickstart --output_dir=exports/quickstart
  movinet-export --model_dir=runs/quickstart --quantize=float16,int8 \
      --calibration_data=data/quickstart --output_dir=exports/quantized
  movinet-export --keras=my_model.keras --labels=labels.txt \
      --output_dir=exports/mine
  movinet-export --model_id=a0 --stream \
      --checkpoint=movinet_a0_stream.tar.gz --output_dir=exports/k600_a0

The model comes from one of:
- a training `--model_dir`: its `final_model.keras` (`--weights=final`),
  `best_model.keras` (`best`) or newest checkpoint (`latest_checkpoint`),
  the class names from its `run.json` and the clip sampling from its
  `sampling.json`;
- a `.keras` file (`--keras`);
- an official checkpoint (`--model_id`, `--stream`, `--checkpoint`: a
  directory, `.tar.gz` or URL of one; `--num_classes`, 600 for Kinetics 600).
Class names: `--labels` (one a line), else the run's, else `class_0`, ...
A model trained under mixed precision is exported in float32.

`--output_dir` must be new or empty; it gets `saved_model/`, `model.tflite`
(and `model_<quantization>.tflite` for each of `--quantize`), `labels.txt`
and `export.json` (`trainer.export.exporter`), or nothing if the export
fails. int8 calibrates on `--calibration_clips` clips of
`--calibration_split` of `--calibration_data`, a `movinet-prepare` directory
of your own videos.

Exit status: 0 exported; 1 bad input or an export that failed its parity
check (one line on stderr says what).
"""

import os
import sys
from typing import Optional

from absl import flags
from absl import logging
import keras
import tensorflow as tf

from trainer import command_line
from trainer.data import sampling as sampling_lib
from trainer.export import calibration as calibration_lib
from trainer.export import exporter
from trainer.export import tflite
from trainer.inference import models
from trainer.model import MODEL_IDS
from trainer.model import build_movinet_classifier
from trainer.model import load_official_checkpoint
from trainer.training import checkpointing
from trainer.training import run_identity

FLAGS = flags.FLAGS
WEIGHTS = {**models.WEIGHTS, 'latest_checkpoint': None}
# How the official Kinetics 600 models were evaluated: (frames, temporal
# stride, image size) of `validation_data` in the official
# configs/yaml/movinet_<id>_k600_8x8.yaml; Kinetics decoded at 25 fps.
OFFICIAL_SAMPLING = {'a0': (50, 5, 172), 'a1': (50, 5, 172),
                     'a2': (50, 5, 224), 'a3': (120, 2, 256),
                     'a4': (80, 3, 290), 'a5': (120, 2, 320),
                     't0': (25, 10, 160)}
KINETICS_FPS = 25.0


def _define_flags() -> None:
  """Defines the flags; called by `run` only, so importing defines none."""
  flags.DEFINE_string('model_dir', None, 'A movinet-train --model_dir.')
  flags.DEFINE_enum('weights', 'final', list(WEIGHTS),
                    'With --model_dir: the model at the end of training, at '
                    'its best validation accuracy, or at the newest '
                    'checkpoint (a run still training or preempted).')
  flags.DEFINE_string('keras', None, 'A .keras model file.')
  flags.DEFINE_enum('model_id', None, list(MODEL_IDS),
                    'An official MoViNet, with --checkpoint.')
  flags.DEFINE_bool('stream', False, 'With --model_id: the stream model.')
  flags.DEFINE_string('checkpoint', None, 'With --model_id: an official '
                      'checkpoint directory, .tar.gz, or URL of one.')
  flags.DEFINE_integer('num_classes', 600, 'With --model_id: the classes '
                       "of the checkpoint's head.")
  flags.DEFINE_string('labels', None, 'A text file of class names, one a '
                      'line, in label order.')
  flags.DEFINE_string('output_dir', None, 'A new (or empty) folder for the '
                      'export.')
  flags.DEFINE_integer('image_size', None, 'Height and width of the TFLite '
                       "models' frames (default: the size the model was "
                       'trained at if known, else 172).')
  flags.DEFINE_integer('num_frames', None, "Frames of a base model's "
                       'TFLite models (default: the frames of its training '
                       'clips if known, else 8; a stream model takes one '
                       'frame per call).')
  flags.DEFINE_list('quantize', [], 'TFLite models besides float32: any of '
                    f'{", ".join(tflite.QUANTIZATIONS[1:])} (none: empty).')
  flags.DEFINE_string('calibration_data', None, 'For int8: a '
                      'movinet-prepare directory of your videos.')
  flags.DEFINE_string('calibration_split', 'train', 'For int8: its split.')
  flags.DEFINE_integer('calibration_clips', 32, 'For int8: how many clips.')
  flags.mark_flag_as_required('output_dir')


def _from_model_dir(model_dir: str, weights: str) -> keras.Model:
  """The run's model at `weights` ('final', 'best', 'latest_checkpoint')."""
  if weights != 'latest_checkpoint':
    path = os.path.join(model_dir, WEIGHTS[weights])
    if not tf.io.gfile.exists(path):
      raise ValueError(f'{path} does not exist; train first, or choose '
                       '--weights')
    return keras.saving.load_model(path)
  checkpoint = checkpointing.TrainingCheckpoint(model_dir)
  if not checkpoint.latest():
    raise ValueError(f'{model_dir} has no checkpoint; train first')
  # The architecture from a saved model of the run, else from its record.
  saved = [os.path.join(model_dir, name) for name in WEIGHTS.values()
           if name and tf.io.gfile.exists(os.path.join(model_dir, name))]
  identity = run_identity.read(model_dir)
  if saved:
    model = keras.saving.load_model(saved[0])
  elif identity and identity.model_id and identity.num_classes:
    model = build_movinet_classifier(identity.model_id, identity.num_classes,
                                     stream=bool(identity.stream))
  else:
    raise ValueError(f'{model_dir} records no model (no run.json); export '
                     'a .keras file with --keras')
  checkpoint.check_fits(model)
  checkpoint.attach(model, weights_only=True)
  checkpoint.restore(weights_only=True)
  return model


def official_model(model_id: str, checkpoint: Optional[str],
                   num_classes: int, stream: bool):
  """An official MoViNet from `checkpoint` and how it was evaluated.

  Raises:
    ValueError: no checkpoint, or one that does not fit (named).
  """
  if not checkpoint:
    raise ValueError('--model_id needs --checkpoint (an official '
                     'checkpoint directory, .tar.gz or URL)')
  model = build_movinet_classifier(model_id, num_classes, stream=stream)
  load_official_checkpoint(model, checkpoint)
  frames, step, size = OFFICIAL_SAMPLING[model_id]
  return model, sampling_lib.ClipSampling(
      num_frames=frames, frame_step=step, fps=KINETICS_FPS, image_size=size)


def _source():
  """The model, its class names and its sampling (the defaults when the
  source does not record it).

  Raises:
    ValueError: no source, two sources, or a missing file (named).
  """
  given = [name for name in ('model_dir', 'keras', 'model_id')
           if getattr(FLAGS, name)]
  if len(given) != 1:
    raise ValueError('give one model: --model_dir (a training run), --keras '
                     '(a .keras file) or --model_id with --checkpoint (an '
                     f'official one); got {len(given)}')
  sampling, labels = sampling_lib.ClipSampling(), None
  if FLAGS.model_dir:
    model = _from_model_dir(FLAGS.model_dir, FLAGS.weights)
    sampling = models.read_sampling(FLAGS.model_dir)
    identity = run_identity.read(FLAGS.model_dir)
    labels = identity.label_names if identity else None
  elif FLAGS.keras:
    if not tf.io.gfile.exists(FLAGS.keras):
      raise ValueError(f'--keras={FLAGS.keras} does not exist')
    model = keras.saving.load_model(FLAGS.keras)
  else:
    model, sampling = official_model(FLAGS.model_id, FLAGS.checkpoint,
                                     FLAGS.num_classes, FLAGS.stream)
  if FLAGS.labels:
    labels = models.read_labels(FLAGS.labels)
  return model, list(labels or [f'class_{index}' for index in
                                range(model.num_classes)]), sampling


def _calibration(sampling, stream: bool, image_size: int, num_frames: int):
  """The int8 calibration clips the flags name, or None."""
  if 'int8' not in FLAGS.quantize:
    return None
  if not FLAGS.calibration_data:
    raise ValueError('--quantize=int8 calibrates on your own videos: give '
                     '--calibration_data (a movinet-prepare directory)')
  return calibration_lib.read_clips(
      FLAGS.calibration_data, FLAGS.calibration_split,
      FLAGS.calibration_clips, sampling,
      image_size, num_frames=None if stream else num_frames)


def main(argv) -> None:
  if len(argv) > 1:
    sys.exit(f'movinet-export: error: unexpected arguments {argv[1:]}')
  try:
    unknown = sorted(set(FLAGS.quantize) - set(tflite.QUANTIZATIONS))
    if unknown:
      raise ValueError(f'--quantize={",".join(unknown)} is not one of '
                       f'{", ".join(tflite.QUANTIZATIONS[1:])}')
    exporter.check_output_dir(FLAGS.output_dir)  # before the slow part
    model, labels, sampling = _source()
    image_size = FLAGS.image_size or sampling.image_size
    num_frames = FLAGS.num_frames or sampling.num_frames
    calibration = _calibration(sampling, bool(model.backbone.causal),
                               image_size, num_frames)
    info = exporter.export(
        exporter.as_float32(model), labels, FLAGS.output_dir,
        image_size=image_size, num_frames=num_frames,
        sampling=sampling, quantizations=FLAGS.quantize,
        calibration=calibration)
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
