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
so the states' ranges are those of real videos, not of zeros). Inputs and
outputs stay float32 (the frame counters int32) in every quantization, so a
caller feeds and reads the same tensors.
"""

import os
import re
import tempfile
from typing import Iterable, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf
# The converter's own way to freeze variables; the public `from_concrete_
# functions` freezes too but drops the signature that names the states.
from tensorflow.python.framework import convert_to_constants  # pylint: disable=no-name-in-module

from trainer.export import saved_model

QUANTIZATIONS = ('float32', 'float16', 'dynamic_range', 'int8')


class FlexOpsError(ValueError):
  """The model needs TensorFlow ops that TFLite's builtins lack."""


def _frozen(function: tf.types.experimental.ConcreteFunction, spec):
  """A tf.function over `spec` that runs `function` with its variables as
  constants, with the same structured outputs."""
  frozen = convert_to_constants.convert_variables_to_constants_v2(function)

  @tf.function(input_signature=[spec])
  def run(inputs):
    return tf.nest.pack_sequence_as(function.structured_outputs,
                                    frozen(*tf.nest.flatten(inputs)))

  return run


def _convert(function, spec, quantization: str = 'float32',
             samples=None) -> bytes:
  """The TFLite model of `function` over `spec`, builtin ops only,
  quantized as `quantization` says (`samples`: a callable giving the int8
  calibration inputs, dicts by input name)."""
  frozen = _frozen(function, spec)
  module = tf.Module()
  module.run = frozen
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'frozen')
    tf.saved_model.save(module, path, signatures={
        'serving_default': frozen.get_concrete_function()})
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
    try:
      return converter.convert()
    except Exception as error:  # the converter raises its own ConverterError
      raise FlexOpsError(_flex_message(error)) from error


def _stream_samples(model: keras.Model, clips: Iterable[np.ndarray]
                    ) -> Iterator[dict[str, np.ndarray]]:
  """Each frame of each clip `(1, frames, size, size, 3)` with the states
  the stream model has when it reaches that frame."""
  for clip in clips:
    states = model.init_states(clip.shape)
    for index in range(clip.shape[1]):
      frame = clip[:, index:index + 1]
      yield {**{name: value.numpy() for name, value in states.items()},
             saved_model.IMAGE: frame}
      _, states = model({**states, saved_model.IMAGE: frame},
                        training=False)


def _flex_message(error: Exception) -> str:
  """Names the ops (and where they are) that TFLite's builtins lack."""
  ops = sorted(set(re.findall(r"'(tf\.\w+)' op", str(error))))
  where = sorted(set(re.findall(r'loc\("([^"]+)"', str(error))))[:5]
  return ('The model needs TensorFlow ops that TFLite has no builtin for: '
          f'{", ".join(ops) or str(error).splitlines()[0]}'
          f'{" (at " + ", ".join(where) + ")" if where else ""}; the export '
          'stops rather than depend on Flex (SELECT_TF_OPS) kernels.')


def convert(model: keras.Model, image_size: int, num_frames: int = 1,
            quantization: str = 'float32',
            calibration: Optional[Iterable[np.ndarray]] = None) -> bytes:
  """The TFLite model of `model`: a stream model one frame per call, a base
  model on `num_frames` frames; batch 1, `image_size` x `image_size`.

  Args:
    model: a built `MovinetClassifier` (float32).
    image_size: height and width of the frames.
    num_frames: a base model's frames.
    quantization: one of `QUANTIZATIONS`.
    calibration: with 'int8', float32 clips `(1, frames, image_size,
      image_size, 3)` in [0, 1] from the user's videos (a base model's of
      `num_frames` frames); it is iterated once.

  Raises:
    ValueError: an unknown quantization, or int8 without calibration clips.
    FlexOpsError: an op has no TFLite builtin (named).
  """
  if quantization not in QUANTIZATIONS:
    raise ValueError(f'quantization {quantization!r} is not one of '
                     f'{", ".join(QUANTIZATIONS)}')
  if quantization == 'int8' and calibration is None:
    raise ValueError('int8 quantization needs calibration clips')
  if saved_model.is_stream(model):
    shape = (1, 1, image_size, image_size, 3)
    module = saved_model.StreamModule(model, shape)
    spec = {**saved_model.state_specs(model, shape),
            saved_model.IMAGE: saved_model.image_spec(shape)}
    return _convert(module.call.get_concrete_function(), spec, quantization,
                    lambda: _stream_samples(model, calibration))
  shape = (1, num_frames, image_size, image_size, 3)
  module = saved_model.BaseModule(model, shape)
  return _convert(module.serve.get_concrete_function(),
                  saved_model.image_spec(shape), quantization,
                  lambda: ({saved_model.IMAGE: clip} for clip in calibration))
