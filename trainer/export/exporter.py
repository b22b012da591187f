"""An export directory: SavedModel, TFLite, labels and `export.json`.

`export(model, labels, output_dir, ...)` writes, into a new folder:

- `saved_model/`: the official signatures (`saved_model`);
- `model.tflite`: float32, builtin ops only (`tflite`): the stream model
  one frame per call, the base model on `num_frames` frames; and as asked
  `model_float16.tflite`, `model_dynamic_range.tflite`, `model_int8.tflite`
  (calibrated on the user's clips, `calibration`);
- `labels.txt`: one class name a line, in label order;
- `export.json`: what the model is and takes (`ExportInfo`), with the
  parity measured here on a random clip.

Parity bounds, past which the export fails and nothing is left behind:
SavedModel against Keras 1e-5; TFLite float32 (the stream model fed frame by
frame) against Keras on the whole clip 1e-4, float16 1e-2 (largest absolute
difference of the logits). Dynamic range is measured and reported; int8 is
reported as the fraction of calibration clips whose top-1 class agrees with
the float model's (a warning below 90 %).

An export directory is read back, checked, by `read_info`.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any, Iterator, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from trainer import files
from trainer.data.sampling import ClipSampling
from trainer.export import saved_model
from trainer.export import tflite
from trainer.export.calibration import CalibrationClips

SAVED_MODEL_DIR = 'saved_model'
TFLITE_NAME = 'model.tflite'
LABELS_NAME = 'labels.txt'
INFO_NAME = 'export.json'
# Incremented when the directory's layout changes; readers refuse others.
FORMAT_VERSION = 1
SAVED_MODEL_BOUND = 1e-5
# The largest logit difference from the Keras model each TFLite model may
# have on a random clip (None: measured and reported, not bounded).
TFLITE_BOUNDS = {'float32': 1e-4, 'float16': 1e-2, 'dynamic_range': None}
# Below this top-1 agreement of int8 with float32 the export warns.
INT8_AGREEMENT_WARNING = 0.9
# Frames of the random clip the stream model's parity is measured on; a
# base model's clip has the frames its TFLite model takes.
STREAM_PARITY_FRAMES = 8


class ParityError(ValueError):
  """An exported model's logits differ from the Keras model's past a bound."""


@dataclasses.dataclass(frozen=True)
class ExportInfo:
  """`export.json`: what the exported model is and what it takes.

  Attributes:
    format_version: the layout of the export directory (`FORMAT_VERSION`).
    model_id: 'a0'..'a5' or 't0'.
    variant: 'stream' (states, any number of frames per call) or 'base'.
    image_size: height and width of the TFLite models' frames; the
      SavedModel takes any.
    num_frames: frames of the base TFLite models (None for stream).
    labels: the class names, in label order.
    preprocessing: what a frame must be before it goes in.
    sampling: how the model's training clips came from a video
      (`ClipSampling.to_json()`), which inference repeats.
    tflite: the TFLite files by quantization ('float32', 'float16',
      'dynamic_range', 'int8').
    parity: measured at export against the Keras model: the largest
      absolute logit difference by format ('saved_model', 'tflite',
      'tflite_float16', 'tflite_dynamic_range'), and for int8 the fraction
      of calibration clips whose top-1 class agrees
      ('tflite_int8_top1_agreement').
  """
  model_id: str
  variant: str
  image_size: int
  num_frames: Optional[int]
  labels: tuple[str, ...]
  preprocessing: str
  sampling: dict[str, Any]
  tflite: dict[str, str]
  parity: dict[str, float]
  format_version: int = FORMAT_VERSION


PREPROCESSING = ('RGB, float32 in [0, 1], resized and centre-cropped to '
                 'image_size x image_size')


def _clip(num_frames: int, image_size: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(
      size=(1, num_frames, image_size, image_size, 3)).astype(np.float32)


def _saved_model_logits(path: str, clip: np.ndarray, stream: bool):
  """The SavedModel's logits for `clip`, called as the official notebooks
  call it (the stream model frame by frame)."""
  model = tf.saved_model.load(path)
  if not stream:
    return model.signatures['serving_default'](image=clip)['logits'].numpy()
  states = model.signatures['init_states'](tf.shape(clip))
  for frame in range(clip.shape[1]):
    outputs = model.signatures['call'](**states,
                                       image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  return logits.numpy()


def _tflite_logits(model_content: bytes, clip: np.ndarray, stream: bool):
  """The TFLite model's logits for `clip`, run as the official README runs
  it (the stream model frame by frame, zero states first)."""
  runner = tf.lite.Interpreter(
      model_content=model_content).get_signature_runner()
  if not stream:
    return runner(image=clip)['logits']
  states = {name: np.zeros(detail['shape'], dtype=detail['dtype'])
            for name, detail in runner.get_input_details().items()
            if name != saved_model.IMAGE}
  for frame in range(clip.shape[1]):
    outputs = runner(**states, image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  return logits


def _check(name: str, difference: float, bound: Optional[float]) -> float:
  """`difference`, logged; raises ParityError past `bound` (None: none)."""
  if bound is not None and not difference <= bound:
    raise ParityError(f'The {name} export gives logits {difference:.3g} '
                      f'away from the Keras model (bound {bound:g}); the '
                      'export is not usable.')
  logging.info('%s parity: %.3g%s.', name, difference,
               f' (bound {bound:g})' if bound is not None else '')
  return float(difference)


def tflite_name(quantization: str) -> str:
  """The file of a TFLite model: `model.tflite` (float32), else
  `model_<quantization>.tflite`."""
  return (TFLITE_NAME if quantization == 'float32'
          else f'model_{quantization}.tflite')


def _agreement(model: keras.Model, model_content: bytes,
               calibration: CalibrationClips, stream: bool) -> float:
  """The fraction of the calibration clips on which the int8 TFLite model's
  top-1 class is the Keras model's."""
  agree = [int(np.argmax(_tflite_logits(model_content, clip, stream))
               == np.argmax(model(clip, training=False)))
           for clip in calibration.clips]
  agreement = sum(agree) / len(agree)
  log = logging.info if agreement >= INT8_AGREEMENT_WARNING else (
      logging.warning)
  log('int8 top-1 agrees with float32 on %d of %d calibration clips (%.1f%%).',
      sum(agree), len(agree), 100 * agreement)
  return agreement


def _write_tflite(staged: str, model: keras.Model, clip: np.ndarray,
                  quantizations,
                  calibration: Optional[CalibrationClips]) -> dict:
  """Writes each TFLite model (of `clip`'s size and, for a base model,
  frames); returns the parity on `clip` by format."""
  stream = saved_model.is_stream(model)
  image_size, num_frames = clip.shape[2], clip.shape[1]
  expected = model(clip, training=False).numpy()
  parity = {}
  models = tflite.convert(model, image_size, num_frames, quantizations,
                          calibration.clips if calibration else None)
  for quantization, model_content in models.items():
    if quantization == 'int8':
      parity['tflite_int8_top1_agreement'] = _agreement(
          model, model_content, calibration, stream)
    else:
      key = 'tflite' + ('' if quantization == 'float32'
                        else f'_{quantization}')
      parity[key] = _check(
          f'TFLite {quantization}',
          np.abs(_tflite_logits(model_content, clip, stream)
                 - expected).max(), TFLITE_BOUNDS[quantization])
    files.write_atomically(os.path.join(staged, tflite_name(quantization)),
                           model_content)
  return parity


def _write_saved_model(staged: str, model: keras.Model,
                       clip: np.ndarray) -> dict:
  """Writes the SavedModel; returns its parity on `clip`."""
  stream = saved_model.is_stream(model)
  expected = model(clip, training=False).numpy()
  path = os.path.join(staged, SAVED_MODEL_DIR)
  saved_model.export(model, path)
  return {'saved_model': _check(
      'SavedModel', np.abs(_saved_model_logits(path, clip, stream)
                           - expected).max(), SAVED_MODEL_BOUND)}


def export(model: keras.Model, labels, output_dir: str, *,
           image_size: int = 172, num_frames: int = 8,
           sampling: Optional[ClipSampling] = None,
           quantizations=('float32',),
           calibration: Optional[CalibrationClips] = None) -> ExportInfo:
  """Exports `model` into the new folder `output_dir`; see the module doc.

  Args:
    model: a built `MovinetClassifier` (float32 weights).
    labels: its class names, in label order.
    output_dir: a folder that does not exist yet or is empty (local or
      `gs://`).
    image_size: the TFLite models' height and width.
    num_frames: the base TFLite models' frames (the stream model takes one
      frame per call).
    sampling: how the model's training clips came from videos (the run's
      `sampling.json`); None: the defaults, at each video's own rate.
    quantizations: the TFLite models to write (`tflite.QUANTIZATIONS`);
      float32 is always written.
    calibration: the clips int8 calibrates on (`calibration.read_clips`).

  Raises:
    ValueError: `output_dir` holds files already, the labels do not fit
      the model, or int8 is asked without calibration clips.
    ParityError: an export differs from the Keras model past its bound;
      nothing is written.
    tflite.FlexOpsError: an op has no TFLite builtin.
  """
  labels = tuple(labels)
  if len(labels) != model.num_classes:
    raise ValueError(f'{len(labels)} label names for a model of '
                     f'{model.num_classes} classes; give one name a class.')
  quantizations = ('float32', *(name for name in tflite.QUANTIZATIONS
                                if name in quantizations
                                and name != 'float32'))
  if 'int8' in quantizations and not (calibration and calibration.clips):
    raise ValueError('int8 quantization calibrates on your videos: give '
                     '--calibration_data (a movinet-prepare directory)')
  check_output_dir(output_dir)
  stream = saved_model.is_stream(model)
  clip = _clip(STREAM_PARITY_FRAMES if stream else num_frames, image_size)
  with _staging(output_dir) as staged:
    parity = _write_saved_model(staged, model, clip)
    parity.update(_write_tflite(staged, model, clip, quantizations,
                                calibration))
    files.write_atomically(os.path.join(staged, LABELS_NAME),
                           ''.join(f'{label}\n' for label in labels))
    info = ExportInfo(
        model_id=model.backbone.model_id,
        variant='stream' if stream else 'base', image_size=image_size,
        num_frames=None if stream else num_frames, labels=labels,
        preprocessing=PREPROCESSING,
        sampling=(sampling or ClipSampling()).to_json(),
        tflite={name: tflite_name(name) for name in quantizations},
        parity=parity)
    files.write_atomically(os.path.join(staged, INFO_NAME),
                           files.json_text(dataclasses.asdict(info)))
  logging.info('Exported %s %s to %s.', info.model_id, info.variant,
               output_dir)
  return info


def as_float32(model: keras.Model) -> keras.Model:
  """`model` computing in float32: itself if it does, else (trained under
  mixed precision) a copy built in float32 with its weights (the weights of
  a mixed-precision model are float32 already)."""
  if model.compute_dtype == 'float32':
    return model
  record = keras.saving.serialize_keras_object(model)

  def float32_policies(value):
    if isinstance(value, dict):
      if value.get('class_name') == 'DTypePolicy':
        return {**value, 'config': {**value['config'], 'name': 'float32'}}
      return {key: float32_policies(item) for key, item in value.items()}
    if isinstance(value, list):
      return [float32_policies(item) for item in value]
    return value

  copy = keras.saving.deserialize_keras_object(float32_policies(record))
  if not copy.built:
    copy.build((None, None, None, None, 3))
  copy.set_weights(model.get_weights())
  logging.info('The model computed in %s; it is exported in float32.',
               model.compute_dtype)
  return copy


def check_output_dir(output_dir: str) -> None:
  """Raises ValueError unless `output_dir` is new or an empty folder."""
  if tf.io.gfile.exists(output_dir) and (
      not tf.io.gfile.isdir(output_dir) or tf.io.gfile.listdir(output_dir)):
    raise ValueError(f'--output_dir={output_dir} is not an empty folder; '
                     'pass a new one (an export is never written over '
                     'another).')


@contextlib.contextmanager
def _staging(output_dir: str) -> Iterator[str]:
  """A folder to write the export in, which becomes `output_dir` only when
  the block ends without an error: beside it and renamed (local), or local
  and then copied (a bucket)."""
  if '://' not in output_dir:
    with files.replacing_directory(output_dir) as staged:
      yield staged
    return
  with tempfile.TemporaryDirectory() as staged:
    yield staged
    for root, _, names in os.walk(staged):
      target = os.path.join(output_dir, os.path.relpath(root, staged))
      tf.io.gfile.makedirs(target)
      for name in names:
        tf.io.gfile.copy(os.path.join(root, name),
                         os.path.join(target, name), overwrite=True)


class ExportDirError(ValueError):
  """An export directory that is incomplete or from another version."""


def read_info(export_dir: str) -> ExportInfo:
  """The `ExportInfo` of `export_dir`, checked: its `export.json` is of this
  version and every file it names is there.

  Raises:
    ExportDirError: one line naming what is missing or wrong.
  """
  path = os.path.join(export_dir, INFO_NAME)
  if not tf.io.gfile.exists(path):
    raise ExportDirError(f'{export_dir} is not an export directory: it has '
                         f'no {INFO_NAME}; make one with movinet-export.')
  try:
    record = json.loads(files.read_text(path))
    version = record.get('format_version')
    if version != FORMAT_VERSION:
      raise ExportDirError(
          f'{path} is of export format {version}, not {FORMAT_VERSION}; '
          're-export the model with this version of movinet-export.')
    record['labels'] = tuple(record['labels'])
    info = ExportInfo(**record)
  except (ValueError, TypeError, AttributeError) as error:
    if isinstance(error, ExportDirError):
      raise
    raise ExportDirError(f'{path} is not a valid export record ({error}); '
                         're-export the model.') from error
  needed = [SAVED_MODEL_DIR, LABELS_NAME, *info.tflite.values()]
  missing = [name for name in needed
             if not tf.io.gfile.exists(os.path.join(export_dir, name))]
  if missing:
    raise ExportDirError(f'{export_dir} is incomplete: {", ".join(missing)} '
                         'missing; re-export the model.')
  return info
