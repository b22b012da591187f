r"""movinet-classify: class probabilities of videos, clips or streaming.

  movinet-classify --model=exports/quickstart video.mp4 folder/ \
      https://example.com/clip.avi
  movinet-classify --model=exports/quickstart --clips=3 --top_k=3 \
      --output_json=results.json videos/
  movinet-classify --model=exports/quickstart --stream --plot=probs.png \
      --output_video=annotated.mp4 video.mp4
  movinet-classify --model=exports/quickstart --stream --camera=0 \
      --max_frames=300
  movinet-classify --model_dir=runs/quickstart --weights=best video.mp4
  movinet-classify --keras=my_model.keras --labels=labels.txt video.mp4

The model: an export directory (`--model`, from movinet-export: its TFLite
model of `--quantization`, or with `--backend=saved_model` its SavedModel),
a training `--model_dir` (`--weights=final|best`) or a `--keras` file.
Frames are resized and resampled as the model's training run took them
(the export's or run's sampling).

Inputs: video files, folders (the videos in them, sorted; other files
skipped), http(s) URLs (downloaded first) and `--camera=N`. By default each
video is classified from `--clips` clips spread over it, and a table of its
top `--top_k` classes printed; with `--stream` a stream model takes the
video frame by frame at its trained rate (states reset per video), and
prints the top-k of every frame it takes. `--output_json` writes every
result; `--plot` (stream) and `--output_video` (.mp4 or .gif, the top-k
written on each frame) write one file per video, named
`<stem>-<video stem><ext>` when there are several.

Exit status: 0 every input classified; 1 a bad flag or model (one line on
stderr says what), or inputs that could not be classified (one line each,
and a last line naming them; the others are still classified).
"""

import sys

from absl import flags

from trainer import command_line
from trainer.inference import batch
from trainer.inference import models
from trainer.inference import sources

FLAGS = flags.FLAGS
PROGRAM = 'movinet-classify'


def _define_flags() -> None:
  """Defines the flags; called by `run` only, so importing defines none."""
  flags.DEFINE_string('model', None, 'An export directory (movinet-export).')
  flags.DEFINE_string('model_dir', None, 'A movinet-train --model_dir '
                      '(instead of --model).')
  flags.DEFINE_enum('weights', 'final', list(models.WEIGHTS),
                    'With --model_dir: the model at the end of training, or '
                    'at its best validation accuracy.')
  flags.DEFINE_string('keras', None, 'A .keras model file (instead of '
                      '--model).')
  flags.DEFINE_string('labels', None, 'A text file of class names, one a '
                      "line, in label order (default: the model's).")
  flags.DEFINE_enum('quantization', 'float32', list(models.QUANTIZATIONS),
                    "With --model: which of the export's TFLite models.")
  flags.DEFINE_enum('backend', 'tflite', list(models.BACKENDS),
                    'With --model: run its TFLite model or its SavedModel.')
  flags.DEFINE_integer('camera', None, 'Also classify this camera '
                       '(cv2.VideoCapture index; 0 is the first).')
  flags.DEFINE_integer('max_frames', None, 'Read at most this many frames '
                       'of each video (a camera: until then, or its end).')
  flags.DEFINE_integer('clips', 1, 'Clips per video, spread evenly over '
                       'it; their probabilities are averaged.')
  flags.DEFINE_boolean('stream', False, 'Frame by frame through a stream '
                       'model at its trained rate; top-k per frame.')
  flags.DEFINE_integer('top_k', 5, 'Classes shown per video and frame.')
  flags.DEFINE_string('output_json', None, 'Write every result to this JSON '
                      'file.')
  flags.DEFINE_string('plot', None, 'With --stream: a PNG of the top-k '
                      'probabilities over time (one per video).')
  flags.DEFINE_string('output_video', None, 'An .mp4 or .gif of each video '
                      'with its top-k written on every frame.')


def model_from_flags() -> models.LoadedModel:
  """The model the flags name.

  Raises:
    ValueError: no model, two, or options that do not fit it.
  """
  given = [(name, getattr(FLAGS, name))
           for name in ('model', 'model_dir', 'keras')
           if getattr(FLAGS, name)]
  if len(given) != 1:
    raise ValueError('give one model: --model (an export directory), '
                     '--model_dir (a training run) or --keras (a .keras '
                     f'file); got {len(given) or "none"}')
  kind, source = given[0]
  if kind != 'model' and FLAGS['backend'].present:
    raise ValueError(f'--backend is for an export directory (--model), not '
                     f'--{kind}')
  return models.load_model(
      source, kind={'model': 'export'}.get(kind, kind),
      quantization=FLAGS.quantization, backend=FLAGS.backend,
      weights=FLAGS.weights, labels=FLAGS.labels)


def options_from_flags() -> batch.Options:
  if FLAGS.camera is not None and not FLAGS.stream and not FLAGS.max_frames:
    raise ValueError('--camera in clip mode reads the camera until '
                     '--max_frames; give it, or --stream')
  return batch.Options(
      clips=FLAGS.clips, stream=FLAGS.stream, top_k=FLAGS.top_k,
      max_frames=FLAGS.max_frames, output_json=FLAGS.output_json,
      plot=FLAGS.plot, output_video=FLAGS.output_video)


def _error(message: str) -> str:
  return f'{PROGRAM}: error: {message.strip().splitlines()[0].rstrip(".")}'


def main(argv) -> None:
  inputs = sources.expand_inputs(argv[1:], FLAGS.camera)
  try:
    if not inputs:
      raise ValueError('no input; name videos, folders or URLs, or '
                       '--camera')
    options = options_from_flags()
    model = model_from_flags()
    failed = batch.classify_all(
        model, inputs, options, emit=lambda line: print(line, flush=True),
        on_error=lambda line: print(_error(line), file=sys.stderr,
                                    flush=True))
  except (ValueError, OSError) as error:
    sys.exit(_error(str(error)))
  if failed:
    sys.exit(_error(f'{len(failed)} of {len(inputs)} inputs failed: '
                    f'{", ".join(failed)}'))


def run() -> None:
  """The `movinet-classify` console script."""
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
