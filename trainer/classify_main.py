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

import dataclasses
import sys
from typing import Optional

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


@dataclasses.dataclass(frozen=True)
class Settings:
  """The flags' values (`from_flags`), which `classify` takes; the defaults
  are the flags'."""
  model: Optional[str] = None
  model_dir: Optional[str] = None
  keras: Optional[str] = None
  weights: str = 'final'
  labels: Optional[str] = None
  quantization: str = 'float32'
  backend: Optional[str] = None  # None: not given ('tflite')
  camera: Optional[int] = None
  max_frames: Optional[int] = None
  clips: int = 1
  stream: bool = False
  top_k: int = 5
  output_json: Optional[str] = None
  plot: Optional[str] = None
  output_video: Optional[str] = None

  @classmethod
  def from_flags(cls) -> 'Settings':
    values = {field.name: getattr(FLAGS, field.name)
              for field in dataclasses.fields(cls)}
    if not FLAGS['backend'].present:
      values['backend'] = None
    return cls(**values)


def load_model(settings: Settings) -> models.LoadedModel:
  """The model the settings name.

  Raises:
    ValueError: no model, two, or options that do not fit it.
    exporter.ExportDirError: an incomplete export, or one of another
      version.
  """
  given = [(name, getattr(settings, name))
           for name in ('model', 'model_dir', 'keras')
           if getattr(settings, name)]
  if len(given) != 1:
    raise ValueError('give one model: --model (an export directory), '
                     '--model_dir (a training run) or --keras (a .keras '
                     f'file); got {len(given) or "none"}')
  kind, source = given[0]
  if kind != 'model' and settings.backend:
    raise ValueError(f'--backend is for an export directory (--model), not '
                     f'--{kind}')
  return models.load_model(
      source, kind={'model': 'export'}.get(kind, kind),
      quantization=settings.quantization,
      backend=settings.backend or 'tflite', weights=settings.weights,
      labels=settings.labels)


def batch_options(settings: Settings) -> batch.Options:
  if (settings.camera is not None and not settings.stream
      and not settings.max_frames):
    raise ValueError('--camera in clip mode reads the camera until '
                     '--max_frames; give it, or --stream')
  return batch.Options(
      clips=settings.clips, stream=settings.stream, top_k=settings.top_k,
      max_frames=settings.max_frames, output_json=settings.output_json,
      plot=settings.plot, output_video=settings.output_video)


def error_line(message: str) -> str:
  """`movinet-classify: error: <the first line of message>`."""
  return f'{PROGRAM}: error: {message.strip().splitlines()[0].rstrip(".")}'


def classify(names, settings: Settings, out=None, err=None) -> int:
  """Classifies the videos `names` (paths, folders, URLs) and the camera
  as `settings` say; prints results to `out` and one line per error to
  `err` (default stdout and stderr).

  Returns:
    The exit status: 0 all classified, 1 otherwise.
  """
  out, err = out or sys.stdout, err or sys.stderr
  inputs = sources.expand_inputs(names, settings.camera)
  try:
    if not inputs:
      raise ValueError('no input; name videos, folders or URLs, or '
                       '--camera')
    options = batch_options(settings)
    model = load_model(settings)
    failed = batch.classify_all(
        model, inputs, options,
        emit=lambda line: print(line, file=out, flush=True),
        on_error=lambda line: print(error_line(line), file=err,
                                    flush=True))
  except (ValueError, OSError) as error:
    print(error_line(str(error)), file=err, flush=True)
    return 1
  if failed:
    print(error_line(f'{len(failed)} of {len(inputs)} inputs failed: '
                     f'{", ".join(failed)}'), file=err, flush=True)
    return 1
  return 0


def main(argv) -> None:
  sys.exit(classify(argv[1:], Settings.from_flags()))


def run() -> None:
  """The `movinet-classify` console script."""
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
