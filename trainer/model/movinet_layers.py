"""The layers a MoViNet is made of: stem, bottleneck block, head, classifier."""

from typing import Dict, Optional, Sequence

import keras
from keras import ops

from trainer.model import activations
from trainer.model.conv_block import ConvBlock
from trainer.model.layer_config import constructor_config
from trainer.model.layer_config import keep_arguments
from trainer.model.pooling import (GlobalAveragePool3D, PositionalEncoding,
                                   spatial_mean)
from trainer.model.video_conv import as_triple

States = Dict[str, object]


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds `value` to a multiple of `divisor`, never down by more than 10%."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return int(rounded)


@keras.saving.register_keras_serializable(package='movinet')
class SqueezeExcitation(keras.layers.Layer):
  """Gates channels by a function of their (cumulative) mean activation.

  `se_type='3d'` pools over frames and space, '2d' over space per frame,
  '2plus3d' concatenates both. With `causal`, the frame pooling is a
  cumulative mean, so frame `t` only sees frames `<= t`.
  """

  # Every argument is kept by `keep_arguments`, some only for later use.
  def __init__(self,
               hidden_filters: int,
               se_type: str = '3d',
               activation: str = 'swish',
               gating_activation: str = 'sigmoid',
               causal: bool = False,
               conv_type: str = '3d',
               use_positional_encoding: bool = False,
               kernel_initializer='he_normal',
               kernel_regularizer=None,
               bias_regularizer=None,
               state_prefix: str = '',
               **kwargs):
    # pylint: disable=unused-argument
    super().__init__(**kwargs)
    keep_arguments(self, locals())
    activations.get_activation(gating_activation, 'gating_activation')
    self.pool = GlobalAveragePool3D(causal=causal, state_prefix=state_prefix,
                                    name='pool', dtype=self.dtype_policy)
    self.pos_encoding = (PositionalEncoding(state_prefix=state_prefix,
                                            name='pos_encoding',
                                            dtype=self.dtype_policy)
                         if use_positional_encoding else None)
    self._conv_args = dict(
        kernel_size=1, causal=causal, use_bias=True, use_batch_norm=False,
        conv_type=conv_type, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer, dtype=self.dtype_policy)
    self.se_reduce = ConvBlock(hidden_filters, activation=activation,
                               name='se_reduce', **self._conv_args)

  def build(self, input_shape):
    channels = input_shape[-1]
    pooled = (input_shape[0], None, 1, 1,
              channels * (2 if self.se_type == '2plus3d' else 1))
    if self.pos_encoding is not None:
      self.pos_encoding.build(pooled)
    self.se_reduce.build(pooled)
    self.se_expand = ConvBlock(channels, activation=self.gating_activation,
                               name='se_expand', **self._conv_args)
    self.se_expand.trainable = self.trainable  # created after any freezing
    self.se_expand.build(pooled[:-1] + (self.hidden_filters,))

  def call(self, inputs, states: Optional[States] = None, training=None):
    del training  # no BatchNorm or dropout inside
    states = dict(states or {})
    if self.se_type == '3d':
      x, states = self.pool(inputs, states)
    elif self.se_type == '2d':
      x = spatial_mean(inputs)
    else:  # '2plus3d'
      x_space = spatial_mean(inputs)
      x, states = self.pool(x_space, states)
      if not self.causal:
        x = ops.repeat(x, ops.shape(inputs)[1], axis=1)
      x = ops.concatenate([x, x_space], axis=-1)
    if self.pos_encoding is not None:
      x, states = self.pos_encoding(x, states)
    x, _ = self.se_reduce(x)
    x, _ = self.se_expand(x)
    return x * inputs, states

  def get_config(self):
    return constructor_config(self, super().get_config())


@keras.saving.register_keras_serializable(package='movinet')
class MovinetBlock(keras.layers.Layer):
  """An inverted bottleneck: expand, depthwise conv, squeeze-excite, project.

  The residual branch is scaled by a learned scalar initialised at zero
  (ReZero) and dropped per example with `stochastic_depth_drop_rate` while
  training. The shortcut is average-pooled and projected when the block
  changes resolution or width.

  Call: `outputs, states = block(inputs, states)`.
  """

  def __init__(self,
               out_filters: int,
               expand_filters: int,
               kernel_size: Sequence[int] = (3, 3, 3),
               strides: Sequence[int] = (1, 1, 1),
               causal: bool = False,
               activation: str = 'swish',
               gating_activation: str = 'sigmoid',
               se_ratio: float = 0.25,
               stochastic_depth_drop_rate: float = 0.0,
               conv_type: str = '3d',
               se_type: str = '3d',
               use_positional_encoding: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3,
               use_sync_bn: bool = False,
               kernel_initializer='he_normal',
               kernel_regularizer=None,
               bias_regularizer=None,
               state_prefix: str = '',
               **kwargs):
    super().__init__(**kwargs)
    keep_arguments(self, locals())
    self.kernel_size = as_triple(kernel_size, 'kernel_size')
    self.strides = as_triple(strides, 'strides')

    self._conv_args = dict(
        conv_type=conv_type, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer, dtype=self.dtype_policy)
    self.expansion = ConvBlock(expand_filters, activation=activation,
                               name='expansion', **self._conv_args)
    self.feature = ConvBlock(
        expand_filters, self.kernel_size, strides=self.strides,
        depthwise=True, causal=causal, activation=activation,
        state_prefix=state_prefix, name='feature', **self._conv_args)
    self.attention = None
    if se_type != 'none':
      hidden = make_divisible(
          se_ratio * expand_filters * (2 if se_type == '2plus3d' else 1))
      self.attention = SqueezeExcitation(
          hidden, se_type=se_type, activation=activation,
          gating_activation=gating_activation, causal=causal,
          conv_type=conv_type,
          use_positional_encoding=use_positional_encoding,
          kernel_initializer=kernel_initializer,
          kernel_regularizer=kernel_regularizer,
          bias_regularizer=bias_regularizer, state_prefix=state_prefix,
          name='se', dtype=self.dtype_policy)
    self.projection = ConvBlock(out_filters, name='projection',
                                **self._conv_args)
    self.downsample = any(s > 1 for s in self.strides)
    self.seed_generator = (keras.random.SeedGenerator()
                           if stochastic_depth_drop_rate else None)

  def build(self, input_shape):
    self.expansion.build(input_shape)
    expanded = input_shape[:-1] + (self.expand_filters,)
    self.feature.build(expanded)
    featured = self.feature.compute_output_shape(expanded)
    if self.attention is not None:
      self.attention.build(featured)
    self.projection.build(featured)
    self.rezero = self.add_weight(name='rezero', shape=(),
                                  initializer='zeros')
    self.skip = None
    if input_shape[-1] != self.out_filters or self.downsample:
      self.skip = ConvBlock(self.out_filters, name='skip_project',
                            **self._conv_args)
      self.skip.trainable = self.trainable  # created after any freezing
      pooled = featured[:-1] + (input_shape[-1],)
      self.skip.build(pooled)

  def _shortcut(self, inputs, training):
    """The residual branch: identity, or pooled and projected to `filters`."""
    if self.skip is None:
      return inputs
    x = inputs
    if self.downsample:
      shape = ops.shape(x)
      frames_2d = ops.reshape(x, (-1, shape[2], shape[3], x.shape[-1]))
      pooled = ops.average_pool(frames_2d, pool_size=3, strides=2,
                                padding='same')
      pooled_shape = ops.shape(pooled)
      x = ops.reshape(pooled, (shape[0], shape[1], pooled_shape[1],
                               pooled_shape[2], x.shape[-1]))
    x, _ = self.skip(x, training=training)
    return x

  def call(self, inputs, states: Optional[States] = None, training=None):
    states = dict(states or {})
    x, _ = self.expansion(inputs, training=training)
    x, states = self.feature(x, states, training=training)
    if self.attention is not None:
      x, states = self.attention(x, states)
    x, _ = self.projection(x, training=training)
    x = x * ops.cast(self.rezero, x.dtype)
    if training and self.stochastic_depth_drop_rate:
      keep = 1.0 - self.stochastic_depth_drop_rate
      noise = keras.random.uniform((ops.shape(x)[0], 1, 1, 1, 1),
                                   dtype=x.dtype, seed=self.seed_generator)
      x = x / keep * ops.floor(keep + noise)
    return x + self._shortcut(inputs, training), states

  def compute_output_shape(self, input_shape):
    shape = self.feature.compute_output_shape(input_shape)
    return shape[:-1] + (self.out_filters,)

  def get_config(self):
    return constructor_config(self, super().get_config())
