"""TFLite models of a MoViNet, with builtin ops only.

The stream model runs one frame per call, its states as named inputs and
outputs of the default signature, as the official README uses it:

  runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
  states = {name: np.zeros(detail['shape'], detail['dtype'])
            for name, detail in runner.get_input_details().items()
            if name != 'image'}
  for frame in frames:                       # (1, 1, size, size, 3)
    outputs = runner(**states, image=frame)
    logits = outputs.pop('logits')
    states = outputs

The base model takes a fixed number of frames and gives `logits` and
`probabilities`. Shapes are fixed (batch 1, `image_size`), as TFLite
needs; the variables are frozen into the model.

Quantizations (`QUANTIZATIONS`): 'float32' (none); 'float16' (weights
stored in float16, computed in float32); 'dynamic_range' (weights in int8,
activations quantized on the fly); 'int8' (weights and activations in int8,
their ranges calibrated on clips the caller gives: the stream model is run
frame by frame over them and each frame's states are a calibration sample,
so the states' ranges are those of real videos, not of zeros; the ops of
`FLOAT_IN_INT8` stay float32, as XNNPACK has no int8 kernel for them).
Inputs and outputs stay float32 (the frame counters int32) in every
quantization, so a caller feeds and reads the same tensors.
"""

import os
import re
import tempfile
from typing import Iterable, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf
# The converter's quantizer with a denylist, as its quantization debugger
# calls it; the public options quantize every op that has an int8 kernel.
from tensorflow.lite.python import convert as lite_convert  # pylint: disable=no-name-in-module

from trainer.export import saved_model

QUANTIZATIONS = ('float32', 'float16', 'dynamic_range', 'int8')

# Ops an int8 model computes in float32 (between DEQUANTIZE and QUANTIZE):
# TFLite's default XNNPACK delegate has no int8 kernel for them, so in int8
# each runs in TFLite's own kernel and splits the delegated graph (a0 stream,
# 172: 75 partitions; int8 HARD_SWISH alone 6.8 ms of 8.4 ms a frame, 0.16
# ms in float32). In float32 XNNPACK takes them with their (de)quantization.
FLOAT_IN_INT8 = ('HARD_SWISH', 'DIV', 'AVERAGE_POOL_2D')


class FlexOpsError(ValueError):
  """The model needs TensorFlow ops that TFLite's builtins lack."""


def _converter(path: str, quantization: str, samples):
  """A converter of the SavedModel at `path` to `quantization`."""
  converter = tf.lite.TFLiteConverter.from_saved_model(
      path, signature_keys=['serving_default'])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantization != 'float32':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  if quantization == 'int8':
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return _Int8Converter(converter)
  return converter


class _Int8Converter:
  """Calibrates with `converter` and quantizes to int8 all but the ops
  of `FLOAT_IN_INT8`; inputs and outputs stay float32."""

  def __init__(self, converter: tf.lite.TFLiteConverter):
    self._converter = converter
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access

  def convert(self) -> bytes:
    return lite_convert.mlir_quantize(self._converter.convert(),
                                      denylisted_ops=list(FLOAT_IN_INT8))


def _convert(function, spec, quantizations=('float32',),
             samples=None) -> dict[str, bytes]:
  """The TFLite models of `function` over `spec`, builtin ops only, by
  quantization; `samples(frozen)` gives the int8 calibration inputs (dicts
  by input name), `frozen` being `function` with constant weights."""
  frozen = saved_model.frozen(function, spec)
  module = tf.Module()
  module.run = frozen
  models = {}
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'frozen')
    tf.saved_model.save(module, path, signatures={
        'serving_default': frozen.get_concrete_function()})
    for quantization in quantizations:
      converter = _converter(path, quantization,
                             samples and (lambda: samples(frozen)))
      try:
        models[quantization] = converter.convert()
      except Exception as error:  # the converter's own ConverterError
        raise FlexOpsError(_flex_message(error)) from error
  return models


def _stream_samples(step, clips: Iterable[np.ndarray]
                    ) -> Iterator[dict[str, np.ndarray]]:
  """Each frame of each clip `(1, frames, size, size, 3)` with the states
  the stream model has when it reaches that frame; `step` maps the states
  and a frame to the next states and the logits."""
  for clip in clips:
    states = None
    for index in range(clip.shape[1]):
      frame = clip[:, index:index + 1]
      if states is None:
        states = {name: np.zeros(spec.shape, spec.dtype.as_numpy_dtype)
                  for name, spec in step.input_signature[0].items()
                  if name != saved_model.IMAGE}
      inputs = {**states, saved_model.IMAGE: frame}
      yield inputs
      outputs = step(inputs)
      states = {name: value.numpy() for name, value in outputs.items()
                if name != saved_model.LOGITS}


def _flex_message(error: Exception) -> str:
  """Names the ops (and where they are) that TFLite's builtins lack."""
  ops = sorted(set(re.findall(r"'(tf\.\w+)' op", str(error))))
  where = sorted(set(re.findall(r'loc\("([^"]+)"', str(error))))[:5]
  return ('The model needs TensorFlow ops that TFLite has no builtin for: '
          f'{", ".join(ops) or str(error).splitlines()[0]}'
          f'{" (at " + ", ".join(where) + ")" if where else ""}; the export '
          'stops rather than depend on Flex (SELECT_TF_OPS) kernels.')


def convert(model: keras.Model, image_size: int, num_frames: int = 1,
            quantizations=('float32',),
            calibration: Optional[Iterable[np.ndarray]] = None
            ) -> dict[str, bytes]:
  """The TFLite models of `model` by quantization: a stream model one frame
  per call, a base model on `num_frames` frames; batch 1, `image_size` x
  `image_size`. The model is traced and frozen once for all of them.

  Args:
    model: a built `MovinetClassifier` (float32).
    image_size: height and width of the frames.
    num_frames: a base model's frames.
    quantizations: some of `QUANTIZATIONS`.
    calibration: with 'int8', float32 clips `(1, frames, image_size,
      image_size, 3)` in [0, 1] from the user's videos (a base model's of
      `num_frames` frames).

  Raises:
    ValueError: an unknown quantization, or int8 without calibration clips.
    FlexOpsError: an op has no TFLite builtin (named).
  """
  unknown = [name for name in quantizations if name not in QUANTIZATIONS]
  if unknown:
    raise ValueError(f'quantization {unknown[0]!r} is not one of '
                     f'{", ".join(QUANTIZATIONS)}')
  if 'int8' in quantizations and calibration is None:
    raise ValueError('int8 quantization needs calibration clips')
  clips = list(calibration or ())
  if saved_model.is_stream(model):
    shape = (1, 1, image_size, image_size, 3)
    module = saved_model.StreamModule(model, shape)
    spec = {**saved_model.state_specs(model, shape),
            saved_model.IMAGE: saved_model.image_spec(shape)}
    return _convert(module.call.get_concrete_function(), spec, quantizations,
                    lambda frozen: _stream_samples(frozen, clips))
  shape = (1, num_frames, image_size, image_size, 3)
  module = saved_model.BaseModule(model, shape)
  return _convert(module.serve.get_concrete_function(),
                  saved_model.image_spec(shape), quantizations,
                  lambda _: ({saved_model.IMAGE: clip} for clip in clips))
