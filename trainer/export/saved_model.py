"""SavedModels with the official MoViNet signatures, weights frozen.

The signatures' graphs hold the weights as constants (an inference model,
not one to train further): a frozen graph reads no variable and TensorFlow
folds the arithmetic on weights alone (kernel reshapes, BatchNorm folding)
once: an a0 stream step at 172 x 172 took 5.8 ms frozen against 7.9 ms
over variables (`benchmarks/stream_latency.py`).

Base model, `serving_default`: `image`, float32 `(batch, frames, height,
width, 3)` RGB in [0, 1] (frames, height and width may be fixed) ->
`logits` and `probabilities` `(batch, classes)`.

Stream model, as the official notebooks use it:

  model = tf.saved_model.load(path)
  states = model.signatures['init_states'](tf.shape(video))
  for frame in frames:                       # (batch, 1, height, width, 3)
    outputs = model.signatures['call'](**states, image=frame)
    logits = outputs.pop('logits')
    states = outputs

`init_states` takes the int32 shape of one chunk `(batch, frames, height,
width, 3)` and gives the zero states under their official names; `call`
takes them with `image` and gives the next states and `logits`.
"""

from typing import Optional

import keras
import tensorflow as tf
# The converter's own way to freeze variables.
from tensorflow.python.framework import convert_to_constants  # pylint: disable=no-name-in-module

IMAGE = 'image'
LOGITS = 'logits'
PROBABILITIES = 'probabilities'


def state_specs(model: keras.Model, shape) -> dict[str, tf.TensorSpec]:
  """The specs of the stream states of `model` for chunks of `shape`
  (`(batch, frames, height, width, 3)`, None for any size), named.

  With `shape` fully known the states' shapes are too (TFLite); otherwise
  only the frame counters' `(1,)` is.
  """
  fixed = None not in shape
  zeros = model.init_states(tuple(1 if size is None else size
                                  for size in shape))
  return {name: tf.TensorSpec(
      value.shape if fixed or 'frame_count' in name
      else [None] * len(value.shape), value.dtype, name=name)
          for name, value in zeros.items()}


def image_spec(shape) -> tf.TensorSpec:
  return tf.TensorSpec(shape, tf.float32, name=IMAGE)


class StreamModule:
  """`init_states` and `call` of a stream model, as tf.functions."""

  def __init__(self, model: keras.Model, shape=(None,) * 4 + (3,)):
    inputs = {**state_specs(model, shape), IMAGE: image_spec(shape)}

    def init_states(input_shape):
      return model.init_states(input_shape)

    def call(inputs):
      logits, states = model(inputs, training=False)
      return {**states, LOGITS: logits}

    self.init_states = tf.function(
        init_states, input_signature=[tf.TensorSpec([5], tf.int32)])
    self.call = tf.function(call, input_signature=[inputs])


class BaseModule:
  """`serving_default` of a base model, as a tf.function."""

  def __init__(self, model: keras.Model, shape=(None,) * 4 + (3,)):

    def serve(image):
      logits = model(image, training=False)
      return {LOGITS: logits, PROBABILITIES: tf.nn.softmax(logits)}

    self.serve = tf.function(serve, input_signature=[image_spec(shape)])


def is_stream(model: keras.Model) -> bool:
  """Whether `model` is a stream (causal) model, which keeps states."""
  return bool(model.backbone.causal)


def frozen(function: tf.types.experimental.ConcreteFunction,
           spec) -> tf.types.experimental.PolymorphicFunction:
  """A tf.function over `spec` that runs `function` with its variables as
  constants, with the same structured outputs.

  A frozen graph reads no variable and skips the arithmetic on weights
  alone (kernel reshapes, BatchNorm folding), which TensorFlow's grappler
  folds into constants once instead of redoing it at every call.
  """
  constant = convert_to_constants.convert_variables_to_constants_v2(function)

  @tf.function(input_signature=[spec])
  def run(inputs):
    return tf.nest.pack_sequence_as(function.structured_outputs,
                                    constant(*tf.nest.flatten(inputs)))

  return run


def export(model: keras.Model, path: str,
           num_frames: Optional[int] = None,
           image_size: Optional[int] = None) -> None:
  """Writes a SavedModel of `model` with the official signatures, its
  weights frozen into the graph (an inference model: no variables).

  Args:
    model: a built `MovinetClassifier`.
    path: the SavedModel directory (local or `gs://`).
    num_frames: fixes a base model's frames (None: any).
    image_size: fixes height and width (None: any).
  """
  frames = None if is_stream(model) else num_frames
  shape = (None, frames, image_size, image_size, 3)
  module = tf.Module()
  if is_stream(model):
    traced = StreamModule(model, shape)
    module.init_states = traced.init_states
    module.call = frozen(traced.call.get_concrete_function(),
                         {**state_specs(model, shape),
                          IMAGE: image_spec(shape)})
    signatures = {'init_states': module.init_states.get_concrete_function(),
                  'call': module.call.get_concrete_function()}
  else:
    module.serve = frozen(BaseModule(model, shape).serve
                          .get_concrete_function(), image_spec(shape))
    signatures = {'serving_default': module.serve.get_concrete_function()}
  tf.saved_model.save(module, path, signatures=signatures)
