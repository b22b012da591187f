"""Runs one exported or Keras MoViNet on preprocessed frames.

Every runner takes float32 frames `(1, frames, size, size, 3)` in [0, 1]
and gives float32 logits `(classes,)`; what each format needs (states under
their names, one frame per TFLite call, quantized tensors) stays inside.

Stream runners: `init_states(shape)` gives the zero states for chunks of
`shape`, `step(states, chunk)` the logits after the chunk and the next
states; `max_chunk` is the most frames one call takes (None: any).
Base runners: `logits(clip)`; `num_frames` is the clip length the model
is fixed to (None: any).
"""

from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from trainer.export import saved_model

IMAGE = saved_model.IMAGE
LOGITS = saved_model.LOGITS
# Integer tensors a quantized TFLite model may take or give in place of
# float32 ones, mapped through their scale and zero point.
_QUANTIZED_TYPES = (np.int8, np.uint8, np.int16)


def _is_quantized(detail: dict) -> bool:
  scale, _ = detail['quantization']
  return detail['dtype'] in _QUANTIZED_TYPES and scale != 0


def quantize(value: np.ndarray, detail: dict) -> np.ndarray:
  """A float tensor as a TFLite input of `detail` takes it: quantized with
  its scale and zero point when the input is an integer one, else cast."""
  if not _is_quantized(detail):
    return np.asarray(value, detail['dtype'])
  scale, zero_point = detail['quantization']
  info = np.iinfo(detail['dtype'])
  quantized = np.round(np.asarray(value, np.float32) / scale) + zero_point
  return np.clip(quantized, info.min, info.max).astype(detail['dtype'])


def dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
  """A TFLite output of `detail` as float32 (integer counters unchanged)."""
  if not _is_quantized(detail):
    return value
  scale, zero_point = detail['quantization']
  return ((np.asarray(value, np.float32) - zero_point) * scale).astype(
      np.float32)


class TfliteModel:
  """The default signature of a TFLite model, called with float tensors:
  integer inputs and outputs are (de)quantized here."""

  def __init__(self, path: str):
    self._runner = tf.lite.Interpreter(
        model_path=path).get_signature_runner()
    self.inputs = self._runner.get_input_details()
    self.outputs = self._runner.get_output_details()

  def __call__(self, **inputs) -> dict[str, np.ndarray]:
    outputs = self._runner(**{name: quantize(value, self.inputs[name])
                              for name, value in inputs.items()})
    return {name: dequantize(value, self.outputs[name])
            for name, value in outputs.items()}

  def input_shape(self, name: str = IMAGE) -> tuple[int, ...]:
    return tuple(int(size) for size in self.inputs[name]['shape'])

  @property
  def num_classes(self) -> int:
    return int(self.outputs[LOGITS]['shape'][-1])


class TfliteStream(TfliteModel):
  """A stream TFLite model: one frame per call, states as named tensors
  (float32 here whatever the model keeps them in)."""

  max_chunk = 1

  def init_states(self, shape=None) -> dict[str, np.ndarray]:
    del shape  # fixed by the model
    return {name: np.zeros(detail['shape'], np.float32
                           if _is_quantized(detail) else detail['dtype'])
            for name, detail in self.inputs.items() if name != IMAGE}

  def step(self, states, chunk) -> tuple[np.ndarray, dict[str, Any]]:
    outputs = self(**states, image=chunk)
    logits = outputs.pop(LOGITS)
    return np.asarray(logits, np.float32)[0], outputs


class TfliteBase(TfliteModel):
  """A base TFLite model on a fixed number of frames."""

  @property
  def num_frames(self) -> int:
    return self.input_shape()[1]

  def logits(self, clip) -> np.ndarray:
    return np.asarray(self(image=clip)[LOGITS], np.float32)[0]


class SavedModelStream:
  """The `init_states` and `call` signatures of a stream SavedModel."""

  max_chunk = None

  def __init__(self, path: str):
    self._signatures = tf.saved_model.load(path).signatures

  def init_states(self, shape):
    return self._signatures['init_states'](tf.constant(shape, tf.int32))

  def step(self, states, chunk):
    outputs = self._signatures['call'](**states,
                                       image=tf.constant(chunk, tf.float32))
    logits = outputs.pop(LOGITS)
    return logits.numpy()[0], outputs


class SavedModelBase:
  """The `serving_default` signature of a base SavedModel."""

  num_frames = None

  def __init__(self, path: str):
    self._serve = tf.saved_model.load(path).signatures['serving_default']

  def logits(self, clip) -> np.ndarray:
    return self._serve(image=tf.constant(clip, tf.float32))[
        LOGITS].numpy()[0]


class KerasStream:
  """A stream `MovinetClassifier`, called with its states."""

  max_chunk = None

  def __init__(self, model: keras.Model):
    self.model = model

  def init_states(self, shape):
    return self.model.init_states(tuple(shape))

  def step(self, states, chunk):
    logits, states = self.model({**states, IMAGE: tf.constant(chunk)},
                                training=False)
    return np.asarray(logits, np.float32)[0], states


class KerasBase:
  """A base `MovinetClassifier` on clips of any length."""

  num_frames = None

  def __init__(self, model: keras.Model):
    self.model = model

  def logits(self, clip) -> np.ndarray:
    return np.asarray(self.model(tf.constant(clip), training=False),
                      np.float32)[0]


def keras_runner(model: keras.Model):
  """The stream or base runner of a `MovinetClassifier`."""
  return (KerasStream if saved_model.is_stream(model) else KerasBase)(model)


def run_stream(runner, states, frames: np.ndarray,
               chunk: Optional[int] = None):
  """Feeds `frames` `(1, frames, size, size, 3)` through a stream runner in
  chunks of at most `chunk` frames (and its `max_chunk`); returns the last
  logits `(classes,)` and the states."""
  limit = min(filter(None, (chunk, runner.max_chunk)),
              default=frames.shape[1])
  logits = None
  for start in range(0, frames.shape[1], limit):
    logits, states = runner.step(states, frames[:, start:start + limit])
  return logits, states
