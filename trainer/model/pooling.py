"""Pooling over video frames that can run as a stream; positional encoding."""

from typing import Dict, Optional

import keras
from keras import ops

from trainer.model.layer_config import constructor_config


States = Dict[str, object]


@keras.saving.register_keras_serializable(package='movinet')
class GlobalAveragePool3D(keras.layers.Layer):
  """Mean over frames, height and width, resumable across clip chunks.

  The running sum and frame count live in
  `states['<state_prefix>_pool_buffer']`, `(batch, 1, 1, 1, channels)`, and
  `states['<state_prefix>_pool_frame_count']`, `(1,)` int32.

  Args:
    causal: if True, output one cumulative mean per frame
      `(batch, frames, 1, 1, channels)` (frame `t` sees frames `<= t`);
      otherwise the mean of everything seen `(batch, 1, 1, 1, channels)`.
    state_prefix: the prefix of the state names.

  Call: `outputs, states = pool(inputs, states)`.
  """

  def __init__(self, causal: bool = False, state_prefix: str = '', **kwargs):
    super().__init__(**kwargs)
    self.causal = causal
    self.state_prefix = state_prefix
    self.buffer_name = f'{state_prefix}_pool_buffer'
    self.frame_count_name = f'{state_prefix}_pool_frame_count'

  def call(self, inputs, states: Optional[States] = None):
    states = dict(states or {})
    buffer = states.get(self.buffer_name)
    if buffer is None:
      buffer = ops.zeros_like(inputs[:, :1, :1, :1])
    buffer = ops.cast(buffer, inputs.dtype)
    num_frames = ops.shape(inputs)[1]
    frame_count = ops.cast(
        states.get(self.frame_count_name, ops.zeros((1,), 'int32')), 'int32')
    states[self.frame_count_name] = frame_count + num_frames

    if self.causal:
      # Ops on axes of static size 1 are skipped: a stream of one frame at
      # a time (squeeze-excitation pools spatial means) needs only the sum.
      x = (inputs if tuple(inputs.shape[2:4]) == (1, 1) else
           ops.mean(inputs, axis=(2, 3), keepdims=True))
      one_frame = inputs.shape[1] == 1
      x = (x if one_frame else ops.cumsum(x, axis=1)) + buffer
      states[self.buffer_name] = x if one_frame else x[:, -1:]
      divisors = ops.arange(num_frames, dtype='int32') + frame_count + 1
      x = x / ops.cast(ops.reshape(divisors, (1, -1, 1, 1, 1)), x.dtype)
    else:
      shape = ops.shape(inputs)
      x = ops.sum(inputs, axis=(1, 2, 3), keepdims=True)
      x = x / ops.cast(shape[2] * shape[3], x.dtype)
      x = x + buffer
      states[self.buffer_name] = x
      x = x / ops.cast(frame_count + num_frames, x.dtype)
    return x, states

  def compute_output_shape(self, input_shape):
    frames = input_shape[1] if self.causal else 1
    return (input_shape[0], frames, 1, 1, input_shape[-1])

  def get_config(self):
    return constructor_config(self, super().get_config())


def spatial_mean(inputs):
  """Mean over height and width: `(batch, frames, 1, 1, channels)`."""
  return ops.mean(inputs, axis=(2, 3), keepdims=True)


@keras.saving.register_keras_serializable(package='movinet')
class PositionalEncoding(keras.layers.Layer):
  """Adds a sinusoidal encoding of the frame index, scaled by a learned scalar.

  The scalar starts at zero, so the network learns whether to use it. The
  index of the first frame comes from
  `states['<state_prefix>_pos_enc_frame_count']`, `(1,)` int32, so streamed
  chunks get the positions they would have in the whole clip.
  """

  def __init__(self, state_prefix: str = '', **kwargs):
    super().__init__(**kwargs)
    self.state_prefix = state_prefix
    self.frame_count_name = f'{state_prefix}_pos_enc_frame_count'

  def build(self, input_shape):
    self.scale = self.add_weight(name='scale', shape=(), initializer='zeros')

  def call(self, inputs, states: Optional[States] = None):
    states = dict(states or {})
    num_frames = ops.shape(inputs)[1]
    channels = inputs.shape[-1]
    start = ops.cast(
        states.get(self.frame_count_name, ops.zeros((1,), 'int32')), 'int32')
    states[self.frame_count_name] = start + num_frames

    positions = ops.cast(ops.arange(num_frames, dtype='int32') + start[0],
                         'float32')[:, None]
    index = ops.arange(channels, dtype='int32')[None, :]
    power = ops.cast(2 * (index // 2), 'float32') / float(channels)
    radians = positions * (1.0 / ops.power(10_000.0, power))
    encoding = ops.concatenate(
        [ops.sin(radians[:, 0::2]), ops.cos(radians[:, 1::2])], axis=-1)
    encoding = ops.reshape(encoding, (1, num_frames, 1, 1, channels))
    encoding = ops.cast(encoding, inputs.dtype) * ops.cast(self.scale,
                                                           inputs.dtype)
    return inputs + encoding, states

  def get_config(self):
    return constructor_config(self, super().get_config())
