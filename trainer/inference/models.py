"""A model to classify with, from an export directory, a training
model_dir or a `.keras` file, with its labels and sampling.

`load_model(source, ...)` finds what `source` is:

- an export directory (`export.json`, checked by `exporter.read_info`):
  its TFLite model of the chosen quantization (`backend='tflite'`) or its
  SavedModel (`backend='saved_model'`);
- a training `model_dir` (`final_model.keras`, or `best_model.keras` with
  `weights='best'`; labels from `run.json`, sampling from `sampling.json`,
  else the `ClipSampling` defaults, logged);
- a `.keras` file, or a `keras.Model` already loaded (default sampling).

Labels: the `labels` given (a list, or a text file of one name a line),
else the export's or the run's, else `class_0`, `class_1`, ...
"""

import dataclasses
import json
import os
from typing import Any, Optional, Sequence, Union

from absl import logging
import keras

from trainer import files
from trainer.data import sampling as sampling_lib
from trainer.data.sampling import ClipSampling
from trainer.export import exporter
from trainer.export import saved_model
from trainer.export import tflite
from trainer.inference import runners
import trainer.model  # noqa: F401  # pylint: disable=unused-import
# (registers the layers and the loss `load_model` needs)
from trainer.training import run_identity

QUANTIZATIONS = tflite.QUANTIZATIONS
BACKENDS = ('tflite', 'saved_model')
WEIGHTS = {'final': 'final_model.keras', 'best': 'best_model.keras'}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A runner and what inference needs to know about its model.

  Attributes:
    runner: a stream or base runner (`trainer.inference.runners`).
    stream: whether the model keeps states (a causal stream model).
    labels: the class names, in label order.
    sampling: how the model's training clips came from videos.
    image_size: the side of the frames the runner takes, pixels.
    description: what was loaded, for logs and JSON output.
  """
  runner: Any
  stream: bool
  labels: tuple[str, ...]
  sampling: ClipSampling
  image_size: int
  description: str

  @property
  def clip_frames(self) -> int:
    """Frames of one clip: a fixed-size model's, else the training clip's."""
    return getattr(self.runner, 'num_frames', None) or (
        self.sampling.num_frames)


def read_labels(path: str) -> list[str]:
  """The class names of a text file, one a line (blank lines skipped)."""
  if not files.exists(path):
    raise ValueError(f'--labels={path} does not exist; pass a text file of '
                     'class names, one a line.')
  return [line.strip() for line in files.read_text(path).splitlines()
          if line.strip()]


def _labels(given, found: Optional[Sequence[str]],
            num_classes: int) -> tuple[str, ...]:
  """The labels `given` (names, or a file of them), else `found`, else
  `class_0`...; checked to name every class."""
  if isinstance(given, str):
    given = read_labels(given)
  if given is None:
    given = found or [f'class_{index}' for index in range(num_classes)]
  labels = tuple(given)
  if len(labels) != num_classes:
    raise ValueError(f'{len(labels)} labels for a model of {num_classes} '
                     'classes; pass --labels with one name a class.')
  return labels


def _from_export(export_dir: str, quantization: str, backend: str,
                 labels) -> LoadedModel:
  """The TFLite model or SavedModel of an export directory, checked."""
  info = exporter.read_info(export_dir)
  if backend not in BACKENDS:
    raise ValueError(f'--backend={backend} is not one of '
                     f'{", ".join(BACKENDS)}.')
  if quantization not in info.tflite:
    raise ValueError(
        f'--quantization={quantization}: the export {export_dir} has '
        f'{", ".join(sorted(info.tflite))}; choose one of them.')
  if backend == 'saved_model' and quantization != 'float32':
    raise ValueError(f'--quantization={quantization} is for the TFLite '
                     'backend; the SavedModel is float32.')
  stream = info.variant == 'stream'
  if backend == 'tflite':
    path = os.path.join(export_dir, info.tflite[quantization])
    runner = (runners.TfliteStream if stream else runners.TfliteBase)(path)
    description = f'{path} ({info.model_id} {info.variant}, TFLite)'
  else:
    path = os.path.join(export_dir, exporter.SAVED_MODEL_DIR)
    runner = (runners.SavedModelStream if stream
              else runners.SavedModelBase)(path)
    description = f'{path} ({info.model_id} {info.variant}, SavedModel)'
  return LoadedModel(
      runner=runner, stream=stream,
      labels=_labels(labels, info.labels, len(info.labels)),
      sampling=ClipSampling.from_json(info.sampling),
      image_size=info.image_size, description=description)


def read_sampling(model_dir: str) -> ClipSampling:
  """The run's `sampling.json`, else the defaults (logged)."""
  path = os.path.join(model_dir, sampling_lib.SAMPLING_FILE)
  if not files.exists(path):
    logging.warning('%s has no %s (a run older than it); using the '
                    'default sampling %s.', model_dir,
                    sampling_lib.SAMPLING_FILE, ClipSampling())
    return ClipSampling()
  return ClipSampling.from_json(json.loads(files.read_text(path)))


def _from_keras(model: keras.Model, labels, description: str,
                model_dir: Optional[str] = None,
                sampling: Optional[ClipSampling] = None) -> LoadedModel:
  identity = run_identity.read(model_dir) if model_dir else None
  if sampling is None:
    sampling = read_sampling(model_dir) if model_dir else ClipSampling()
  return LoadedModel(
      runner=runners.keras_runner(model),
      stream=saved_model.is_stream(model),
      labels=_labels(labels, identity and identity.label_names,
                     model.num_classes),
      sampling=sampling, image_size=sampling.image_size,
      description=description)


def _kind(source: str) -> str:
  """'export', 'model_dir' or 'keras': what the path `source` looks like."""
  if files.isdir(source):
    has_weights = any(files.exists(os.path.join(source, name))
                      for name in WEIGHTS.values())
    return 'model_dir' if has_weights else 'export'
  return 'keras'


def load_model(source: Union[str, keras.Model], *,
               kind: Optional[str] = None, quantization: str = 'float32',
               backend: str = 'tflite', weights: str = 'final',
               labels=None, sampling: Optional[ClipSampling] = None
               ) -> LoadedModel:
  """The model `source` names, with its labels and sampling.

  Args:
    source: an export directory, a training model_dir, a `.keras` file or
      a `keras.Model` (see the module doc).
    kind: what `source` is: 'export', 'model_dir' or 'keras'; None: a
      folder with a `.keras` model is a model_dir, another folder an export
      directory, a file a `.keras` file.
    quantization: of an export's TFLite model: one its `export.json`
      lists ('float32', 'float16', 'dynamic_range', 'int8').
    backend: of an export: 'tflite' or 'saved_model'.
    weights: of a model_dir: 'final' or 'best'.
    labels: class names, or a text file of them; None: the model's own.
    sampling: of a Keras model: how its training clips were taken; None:
      the run's `sampling.json`, else the defaults. (An export's is its
      own.)

  Raises:
    exporter.ExportDirError: an incomplete export or one of another
      version (its one-line message).
    ValueError: a missing source, or options that do not fit it (named).
  """
  if isinstance(source, keras.Model):
    return _from_keras(source, labels, type(source).__name__,
                       sampling=sampling)
  source = os.fspath(source)
  kind = kind or _kind(source)
  if kind == 'export':
    return _from_export(source, quantization, backend, labels)
  if quantization != 'float32':
    raise ValueError(f'--quantization={quantization} needs an export '
                     f'directory (--model); {source} is not one.')
  if kind == 'model_dir':
    if weights not in WEIGHTS:
      raise ValueError(f'--weights={weights} is not one of '
                       f'{", ".join(WEIGHTS)}.')
    path = os.path.join(source, WEIGHTS[weights])
    if not files.exists(path):
      raise ValueError(f'{path} does not exist; train first, or choose '
                       '--weights.')
    return _from_keras(keras.saving.load_model(path), labels, path, source,
                       sampling)
  if not files.exists(source):
    raise ValueError(f'{source} does not exist; check --keras.')
  return _from_keras(keras.saving.load_model(source), labels, source,
                     sampling=sampling)
