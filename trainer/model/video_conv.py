"""Video convolutions written as 2D work, for speed.

A depthwise 3D convolution through `keras.layers.Conv3D(groups=channels)`
falls back to XLA's grouped convolution on CPU, which is far slower than the
same result computed as a sum, over the temporal taps, of depthwise 2D
convolutions on frames (`benchmarks/model_speed.py` compares the models).
`VideoConv` always computes that sum:

    out[t] = sum_i conv2d(x[t * stride + i], kernel[i])

over the padded input `x`, with 2D 'same' padding in space (TensorFlow's
rule) and 'same', 'causal' (all padding before the first frame) or 'valid'
(the caller prepended a stream buffer) padding in time. Special cases that
reduce to cheaper ops: a 1x1x1 convolution is a matrix product, and a
depthwise (k, 1, 1) convolution is a weighted sum of shifted frames (at
inference, one depthwise 2D convolution over `(frames, height * width)`).

At inference a BatchNorm after the convolution can be folded into its
kernel and bias (`scale`, `offset`), and the activation applied on the 2D
view of the output, so that TensorFlow fuses the bias into oneDNN's
(depthwise) 2D convolution.

Kernels are stored in the layout of the official MoViNet variables
(`kernel_layout='3d'`: `(t, h, w, in, out)` or `(t, h, w, 1, channels)`;
`'2d'`: `(h, w, in, out)` / `(t, 1, in, out)` or `(h, w, channels, 1)`) so
checkpoints map one to one.
"""

from typing import Sequence, Tuple

import keras
from keras import ops

from trainer.model.layer_config import constructor_config


TEMPORAL_PADDINGS = ('same', 'causal', 'valid')


def as_triple(value, name: str) -> Tuple[int, int, int]:
  """Returns `value` (an int or three ints) as a `(t, h, w)` tuple."""
  if isinstance(value, int):
    return (value,) * 3
  value = tuple(int(v) for v in value)
  if len(value) != 3:
    raise ValueError(f'{name}={value!r} must be an int or three ints '
                     '(frames, height, width).')
  return value


def temporal_pad_amounts(padding: str, kernel_frames: int, stride: int,
                         num_frames):
  """Frames to add before and after the clip for `padding`."""
  if padding == 'valid' or kernel_frames == 1 and stride == 1:
    return 0, 0
  if padding == 'causal':
    return kernel_frames - 1, 0
  if stride == 1:
    total = kernel_frames - 1
  else:  # TensorFlow's 'SAME' rule.
    total = ops.maximum(kernel_frames - ((num_frames - 1) % stride + 1), 0)
  return total // 2, total - total // 2


def pointwise(x, kernel, finish):
  """`finish(x @ kernel)` over the channel axis, as one 2D matrix product.

  `finish` (bias and activation) runs on the reshaped-back output, where
  TensorFlow's graph optimizer does not fuse the bias into the product:
  oneDNN's MatMul with a fused bias took ~29 us per a0 stream layer, the
  plain product ~18 us and the add ~3 us.
  """
  shape = ops.shape(x)
  y = ops.matmul(ops.reshape(x, (-1, shape[-1])), kernel)
  return finish(ops.reshape(y, tuple(shape[:-1]) + (kernel.shape[-1],)))


@keras.saving.register_keras_serializable(package='movinet')
class VideoConv(keras.layers.Layer):
  """A 3D (optionally depthwise) convolution over `(batch, frames, h, w, c)`.

  Args:
    filters: output channels; ignored when `depthwise` (output = input).
    kernel_size: `(frames, height, width)`.
    strides: `(frames, height, width)`.
    depthwise: one filter per input channel.
    temporal_padding: 'same', 'causal' or 'valid' (see module docstring).
    use_bias: add a bias per output channel.
    kernel_layout: '3d' or '2d', the shape the kernel variable is stored in.
    kernel_initializer, kernel_regularizer, bias_regularizer: Keras specs.
  """

  def __init__(self,
               filters: int,
               kernel_size: Sequence[int],
               strides: Sequence[int] = (1, 1, 1),
               depthwise: bool = False,
               temporal_padding: str = 'same',
               use_bias: bool = False,
               kernel_layout: str = '3d',
               kernel_initializer='he_normal',
               kernel_regularizer=None,
               bias_regularizer=None,
               **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = as_triple(kernel_size, 'kernel_size')
    self.strides = as_triple(strides, 'strides')
    self.depthwise = depthwise
    if temporal_padding not in TEMPORAL_PADDINGS:
      raise ValueError(f'temporal_padding={temporal_padding!r}; choose one of '
                       f'{TEMPORAL_PADDINGS}.')
    self.temporal_padding = temporal_padding
    self.use_bias = use_bias
    if kernel_layout not in ('3d', '2d'):
      raise ValueError(f"kernel_layout={kernel_layout!r}; choose '3d' or '2d'.")
    frames, height, width = self.kernel_size
    if kernel_layout == '2d' and frames > 1 and (height, width) != (1, 1):
      raise ValueError(
          f"kernel_layout='2d' holds a spatial or a temporal kernel, not "
          f'kernel_size={self.kernel_size}.')
    self.kernel_layout = kernel_layout
    self.kernel_initializer = kernel_initializer
    self.kernel_regularizer = kernel_regularizer
    self.bias_regularizer = bias_regularizer

  def _kernel_shape(self, in_channels: int) -> Tuple[int, ...]:
    frames, height, width = self.kernel_size
    last2 = (1, in_channels) if self.depthwise else (in_channels, self.filters)
    if self.kernel_layout == '3d':
      return (frames, height, width) + last2
    if self.depthwise:
      last2 = (in_channels, 1)
    if frames > 1:
      return (frames, 1) + last2
    return (height, width) + last2

  def build(self, input_shape):
    in_channels = input_shape[-1]
    if self.depthwise:
      self.filters = in_channels
    self.kernel = self.add_weight(
        name='kernel', shape=self._kernel_shape(in_channels),
        initializer=keras.initializers.get(self.kernel_initializer),
        regularizer=keras.regularizers.get(self.kernel_regularizer))
    self.bias = None
    if self.use_bias:
      self.bias = self.add_weight(
          name='bias', shape=(self.filters,), initializer='zeros',
          regularizer=keras.regularizers.get(self.bias_regularizer))

  def call(self, inputs, scale=None, offset=None, activation=None,
           training=None):
    """Convolves `inputs`, then applies `activation` (a function or None).

    `scale` and `offset`, `(filters,)`, if given, apply `outputs * scale +
    offset` before the activation, through the kernel and the bias (an
    inference BatchNorm folded in). With `training` false, faster forms
    whose gradients are slower on CPU are used.
    """
    kernel, bias = self._folded_weights(scale, offset, inputs.dtype)

    def finish(y):  # on any view of the output: the bias and activation
      if bias is not None:
        y = y + bias
      return y if activation is None else activation(y)

    if self._is_pointwise():
      if self.depthwise:
        return finish(inputs * kernel)
      return pointwise(inputs, kernel, finish)
    if (self.depthwise and self.kernel_size[1:] == (1, 1) and
        self.strides[1:] == (1, 1) and not training):
      return self._temporal_depthwise(inputs, kernel, finish)
    return self._temporal_sum(inputs, kernel, finish)

  def _is_pointwise(self) -> bool:
    return self.kernel_size == (1, 1, 1) and self.strides == (1, 1, 1)

  def _folded_weights(self, scale, offset, dtype):
    """The kernel, `(frames, height, width, in, out)` or `(frames, height,
    width, channels)` (without the unit axes when `_is_pointwise`), and the
    bias or None, with `scale` and `offset` folded in, in `dtype`."""
    frames, height, width = self.kernel_size
    channels = self.filters  # the input channels when depthwise
    if self._is_pointwise():
      shape = (channels,) if self.depthwise else self.kernel.shape[-2:]
    elif self.depthwise:
      shape = (frames, height, width, channels)
    else:
      shape = (frames, height, width) + tuple(self.kernel.shape[-2:])
    kernel = ops.reshape(self.kernel, shape)
    bias = self.bias
    if scale is not None:
      kernel = kernel * scale
      bias = None if bias is None else bias * scale
    if offset is not None:
      bias = offset if bias is None else bias + offset
    return (ops.cast(kernel, dtype),
            None if bias is None else ops.cast(bias, dtype))

  def _pad_frames(self, inputs):
    """`inputs` padded in time for `temporal_padding`."""
    frames, stride = self.kernel_size[0], self.strides[0]
    before, after = temporal_pad_amounts(self.temporal_padding, frames,
                                         stride, ops.shape(inputs)[1])
    if frames > 1 and (before or after):
      inputs = ops.pad(inputs, ((0, 0), (before, after), (0, 0), (0, 0),
                                (0, 0)))
    return inputs

  def _temporal_depthwise(self, inputs, kernel, finish):
    """A depthwise `(t, 1, 1)` convolution as one depthwise 2D one over
    `(batch, frames, height * width, channels)`: one kernel instead of a
    slice, a product and a sum per frame of the kernel. Inference only:
    its gradient is slower on CPU than the sum's."""
    inputs = self._pad_frames(inputs)
    batch, frames, height, width, _ = ops.shape(inputs)
    channels = inputs.shape[-1]
    y = ops.depthwise_conv(
        ops.reshape(inputs, (batch, frames, height * width, channels)),
        ops.reshape(kernel, (self.kernel_size[0], 1, channels, 1)),
        strides=(self.strides[0], 1), padding='valid')
    return ops.reshape(finish(y), (batch, ops.shape(y)[1], height, width,
                                   channels))

  def _temporal_sum(self, inputs, kernel, finish):
    """The convolution as a sum over the kernel's frames of 2D ones, then
    `finish` (with one frame, on the 2D output)."""
    frames, height, width = self.kernel_size
    stride_t, stride_h, stride_w = self.strides
    inputs = self._pad_frames(inputs)
    batch, padded_frames = ops.shape(inputs)[0], ops.shape(inputs)[1]
    out_frames = (padded_frames - frames) // stride_t + 1
    span = (out_frames - 1) * stride_t + 1

    spatial = (height, width) != (1, 1) or (stride_h, stride_w) != (1, 1)
    tap_finish = finish if frames == 1 else lambda y: y
    outputs = None
    for tap in range(frames):
      x = self._frames(inputs, tap, span)
      if spatial:
        y = self._conv2d(x, kernel[tap], tap_finish, batch, out_frames)
      elif self.depthwise:
        y = tap_finish(x * kernel[tap, 0, 0])
      else:
        y = pointwise(x, kernel[tap, 0, 0], tap_finish)
      outputs = y if outputs is None else outputs + y
    return outputs if frames == 1 else finish(outputs)

  def _frames(self, inputs, start, span):
    """Frames `start, start + stride, ...` (`span` frames from `start`)."""
    if self.kernel_size[0] == 1 and self.strides[0] == 1:
      return inputs
    if self.strides[0] == 1:
      # A contiguous slice: its gradient is a cheap pad, while the gradient
      # of a strided slice costs ~30x its forward pass on CPU.
      shape = ops.shape(inputs)
      return ops.slice(inputs, (0, start, 0, 0, 0),
                       (shape[0], span) + tuple(shape[2:]))
    return inputs[:, start:start + span:self.strides[0]]

  def _conv2d(self, x, kernel, finish, batch, out_frames):
    """Applies a 2D kernel, then `finish`, to every frame of `x`."""
    _, _, h, w, c = ops.shape(x)
    frames_2d = ops.reshape(x, (-1, h, w, c))
    strides = self.strides[1:]
    if self.depthwise:
      y = ops.depthwise_conv(frames_2d, kernel[..., None], strides=strides,
                             padding='same')
    else:
      y = ops.conv(frames_2d, kernel, strides=strides, padding='same')
    y = finish(y)
    _, out_h, out_w, out_c = ops.shape(y)
    return ops.reshape(y, (batch, out_frames, out_h, out_w, out_c))

  def compute_output_shape(self, input_shape):
    batch, frames, height, width, channels = input_shape
    stride_t, stride_h, stride_w = self.strides

    def ceil_div(size, stride):
      return None if size is None else -(-size // stride)

    if self.temporal_padding == 'valid' and frames is not None:
      frames = (frames - self.kernel_size[0]) // stride_t + 1
    else:
      frames = ceil_div(frames, stride_t)
    filters = channels if self.depthwise else self.filters
    return (batch, frames, ceil_div(height, stride_h),
            ceil_div(width, stride_w), filters)

  def get_config(self):
    return constructor_config(self, super().get_config())
