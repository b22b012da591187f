"""Convolution + BatchNorm + activation, in the three MoViNet conv types."""

from typing import Dict, Optional, Sequence

import keras
from keras import ops

from trainer.model import activations
from trainer.model import block_specs
from trainer.model.batch_norm import VideoBatchNormalization
from trainer.model.layer_config import constructor_config
from trainer.model.layer_config import keep_arguments
from trainer.model.video_conv import VideoConv, as_triple

States = Dict[str, object]


@keras.saving.register_keras_serializable(package='movinet')
class ConvBlock(keras.layers.Layer):
  """A convolution followed by optional BatchNorm and activation.

  With `conv_type='3d'` one 3D convolution. With '2plus1d' (2D variables) or
  '3d_2plus1d' (3D variables), a kernel `(t, h, w)` with `t > 1` is split into
  a spatial `(1, h, w)` and a temporal `(t, 1, 1)` convolution, each with its
  own BatchNorm and activation.

  When `causal` and the kernel spans several frames, the layer keeps a stream
  buffer: the last `t - 1` input frames of the temporal convolution, read
  from and written to `states['<state_prefix>_stream_buffer']` (zeros when
  absent), so that a clip fed in chunks gives the output of the whole clip.

  Call: `outputs, states = block(inputs, states)`, with `inputs` of shape
  `(batch, frames, height, width, channels)`.
  """

  def __init__(self,
               filters: int,
               kernel_size: Sequence[int] = (1, 1, 1),
               strides: Sequence[int] = (1, 1, 1),
               depthwise: bool = False,
               causal: bool = False,
               use_bias: bool = False,
               use_batch_norm: bool = True,
               activation: Optional[str] = None,
               conv_type: str = '3d',
               norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3,
               use_sync_bn: bool = False,
               kernel_initializer='he_normal',
               kernel_regularizer=None,
               bias_regularizer=None,
               state_prefix: Optional[str] = None,
               **kwargs):
    super().__init__(**kwargs)
    keep_arguments(self, locals())
    block_specs.check_choice('conv_type', conv_type, block_specs.CONV_TYPES)
    self.kernel_size = as_triple(kernel_size, 'kernel_size')
    self.strides = as_triple(strides, 'strides')
    self._activation_fn = (activations.get_activation(activation)
                           if activation else None)

    frames, height, width = self.kernel_size
    split = conv_type != '3d' and frames > 1
    self.buffer_size = frames - 1 if causal and frames > 1 else 0
    self.buffer_name = f'{state_prefix}_stream_buffer'
    layout = '2d' if conv_type == '2plus1d' else '3d'
    conv_args = dict(
        filters=filters, depthwise=depthwise, use_bias=use_bias,
        kernel_layout=layout, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer, dtype=self.dtype_policy)
    time_padding = 'valid' if self.buffer_size else 'same'
    if split:
      self.conv = VideoConv(
          kernel_size=(1, height, width), strides=(1,) + self.strides[1:],
          name='conv', **conv_args)
      self.conv_temporal = VideoConv(
          kernel_size=(frames, 1, 1), strides=(self.strides[0], 1, 1),
          temporal_padding=time_padding, name='conv_temporal', **conv_args)
    else:
      self.conv = VideoConv(
          kernel_size=self.kernel_size, strides=self.strides,
          temporal_padding=time_padding, name='conv', **conv_args)
      self.conv_temporal = None

    bn_args = dict(momentum=norm_momentum, epsilon=norm_epsilon,
                   synchronized=use_sync_bn, dtype=self.dtype_policy)
    self.bn = (VideoBatchNormalization(name='bn', **bn_args)
               if use_batch_norm else None)
    self.bn_temporal = (
        VideoBatchNormalization(name='bn_temporal', **bn_args)
        if use_batch_norm and split else None)

  def build(self, input_shape):
    self.conv.build(input_shape)
    shape = self.conv.compute_output_shape(input_shape)
    if self.bn is not None:
      self.bn.build(shape)
    if self.conv_temporal is not None:
      self.conv_temporal.build(shape)
      shape = self.conv_temporal.compute_output_shape(shape)
      if self.bn_temporal is not None:
        self.bn_temporal.build(shape)

  def _buffered(self, x, states: States):
    """Prepends the stream buffer to `x` and stores the new buffer."""
    buffer = states.get(self.buffer_name)
    if buffer is None:
      shape = ops.shape(x)
      buffer = ops.zeros((shape[0], self.buffer_size) + tuple(shape[2:]),
                         dtype=x.dtype)
    x = ops.concatenate([ops.cast(buffer, x.dtype), x], axis=1)
    states[self.buffer_name] = x[:, -self.buffer_size:]
    return x

  def _conv_norm_act(self, conv, bn, x, training):
    """`activation(bn(conv(x)))`. At inference the BatchNorm is folded into
    the convolution's kernel and bias (no pass of its own over the output)
    and the convolution applies the activation, on its 2D view of the
    output (see `VideoConv.call`)."""
    if bn is not None and training and bn.trainable:
      x = bn(conv(x, training=training), training=training)
      return x if self._activation_fn is None else self._activation_fn(x)
    scale, offset = bn.inference_affine() if bn is not None else (None, None)
    return conv(x, scale=scale, offset=offset,
                activation=self._activation_fn, training=training)

  def call(self, inputs, states: Optional[States] = None, training=None):
    states = dict(states or {})
    x = inputs
    if self.buffer_size and self.conv_temporal is None:
      x = self._buffered(x, states)
    x = self._conv_norm_act(self.conv, self.bn, x, training)
    if self.conv_temporal is not None:
      if self.buffer_size:
        x = self._buffered(x, states)
      x = self._conv_norm_act(self.conv_temporal, self.bn_temporal, x,
                              training)
    return x, states

  def compute_output_shape(self, input_shape):
    shape = self.conv.compute_output_shape(input_shape)
    if self.conv_temporal is not None:
      shape = self.conv_temporal.compute_output_shape(shape)
    return shape

  def get_config(self):
    return constructor_config(self, super().get_config())
