"""The MoViNet backbone: stem, bottleneck blocks and pooled head features."""

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import ops

from trainer.model import activations
from trainer.model import block_specs
from trainer.model.conv_block import ConvBlock
from trainer.model.layer_config import constructor_config
from trainer.model.layer_config import keep_arguments
from trainer.model.movinet_layers import MovinetBlock
from trainer.model.pooling import GlobalAveragePool3D, spatial_mean

States = Dict[str, object]


@keras.saving.register_keras_serializable(package='movinet')
class MovinetBackbone(keras.Model):
  """MoViNet a0-a5 / t0 features, in every configuration of the official code.

  Args:
    model_id: 'a0'..'a5' or 't0'.
    causal: causal temporal convolutions and cumulative squeeze-excitation,
      which makes streaming (clip by clip, frame by frame) possible.
    use_positional_encoding: add a frame-position encoding in the
      squeeze-excitation layers (only when `causal`).
    conv_type: '3d', '2plus1d' or '3d_2plus1d'.
    se_type: '3d', '2d', '2plus3d' or 'none'.
    activation: main activation, 'swish' or 'hard_swish' (or relu, relu6).
    gating_activation: squeeze-excitation gate, 'sigmoid' or 'hard_sigmoid'.
    use_sync_bn: synchronise BatchNorm statistics across replicas.
    norm_momentum, norm_epsilon: BatchNorm settings (official: 0.99, 1e-3).
    kernel_initializer, kernel_regularizer, bias_regularizer: Keras specs.
    stochastic_depth_drop_rate: drop rate of the last block; block `i` of
      `n` drops with `rate * i / n` while training.
    average_pooling_type: head pooling, '3d' (clip), '2d' (per frame) or
      'none'.

  Call: `features, states = backbone(video, states)` with `video` of shape
  `(batch, frames, height, width, 3)` and `features` of shape
  `(batch, 1, 1, 1, project_filters)` for '3d' pooling.
  """

  # Every argument is kept by `keep_arguments`, some only for later use.
  def __init__(self,
               model_id: str = 'a0',
               causal: bool = False,
               use_positional_encoding: bool = False,
               conv_type: str = '3d',
               se_type: str = '3d',
               activation: str = 'swish',
               gating_activation: str = 'sigmoid',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3,
               kernel_initializer='he_normal',
               kernel_regularizer=None,
               bias_regularizer=None,
               stochastic_depth_drop_rate: float = 0.0,
               average_pooling_type: str = '3d',
               **kwargs):
    # pylint: disable=unused-argument
    super().__init__(**kwargs)
    keep_arguments(self, locals())
    self.spec = block_specs.get_architecture(model_id)
    block_specs.check_choice('conv_type', conv_type, block_specs.CONV_TYPES)
    block_specs.check_choice('se_type', se_type, block_specs.SE_TYPES)
    block_specs.check_choice('average_pooling_type', average_pooling_type,
                 block_specs.POOLING_TYPES)
    activations.get_activation(activation, 'activation')
    activations.get_activation(gating_activation, 'gating_activation')
    if not 0.0 <= stochastic_depth_drop_rate < 1.0:
      raise ValueError(f'stochastic_depth_drop_rate='
                       f'{stochastic_depth_drop_rate!r} must be in [0, 1).')

    common = dict(
        conv_type=conv_type, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        dtype=self.dtype_policy)  # sublayers compute like the backbone
    stem = self.spec.stem
    self.stem = ConvBlock(stem.filters, stem.kernel_size, strides=stem.strides,
                          causal=causal, activation=activation,
                          state_prefix='state_stem', name='stem', **common)
    self.blocks = self._make_blocks(common)
    self.head_project = ConvBlock(self.spec.head.project_filters,
                                  activation=activation, name='head_project',
                                  **common)
    self.head_pool = (GlobalAveragePool3D(state_prefix='state_head',
                                          name='head_pool',
                                          dtype=self.dtype_policy)
                      if average_pooling_type == '3d' else None)

  def _make_blocks(self, common: dict) -> list[MovinetBlock]:
    """The blocks of every stage, in order; stochastic depth grows
    linearly with the block's depth."""
    blocks = []
    for stage_index, stage in enumerate(self.spec.stages):
      for layer_index, (expand, kernel, strides) in enumerate(stage.layers):
        name = f'block{stage_index}_layer{layer_index}'
        blocks.append(MovinetBlock(
            stage.base_filters, expand, kernel_size=kernel, strides=strides,
            causal=self.causal, activation=self.activation,
            gating_activation=self.gating_activation,
            stochastic_depth_drop_rate=(self.stochastic_depth_drop_rate
                                        * (len(blocks) + 1)
                                        / self.spec.num_layers),
            se_type=self.se_type,
            use_positional_encoding=(self.use_positional_encoding
                                     and self.causal),
            bias_regularizer=self.bias_regularizer,
            state_prefix=f'state_{name}', name=name, **common))
    return blocks

  @property
  def head_filters(self) -> int:
    """Width of the classifier's hidden layer in the official recipe."""
    return self.spec.head.head_filters

  @property
  def output_filters(self) -> int:
    return self.spec.head.project_filters

  def build(self, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 5 or shape[-1] != 3:
      raise ValueError(
          f'video shape {shape} is not (batch, frames, height, width, 3).')
    self.stem.build(shape)
    shape = self.stem.compute_output_shape(shape)
    for block in self.blocks:
      block.build(shape)
      shape = block.compute_output_shape(shape)
    self.head_project.build(shape)
    self.built = True

  def call(self, inputs, states: Optional[States] = None, training=None):
    if len(inputs.shape) != 5:
      raise ValueError(f'video of shape {tuple(inputs.shape)} has rank '
                       f'{len(inputs.shape)}; expected rank 5 '
                       '(batch, frames, height, width, 3).')
    states = dict(states or {})
    x, states = self.stem(inputs, states, training=training)
    for block in self.blocks:
      x, states = block(x, states, training=training)
    x, _ = self.head_project(x, training=training)
    if self.head_pool is not None:
      x, states = self.head_pool(x, states)
    elif self.average_pooling_type == '2d':
      x = spatial_mean(x)
    return x, states

  def state_shapes(self, input_shape: Sequence[int]) -> Dict[str, Tuple]:
    """Names and shapes of the stream states for a video of `input_shape`.

    Args:
      input_shape: `(batch, frames, height, width, 3)` of one chunk: ints,
        or an int32 tensor of 5 (an exported model's `init_states`).
    """
    batch, height, width = input_shape[0], input_shape[2], input_shape[3]
    shapes = {}
    downsamples = 0

    def scaled(size):  # ceil(size / 2**downsamples), for ints and tensors
      return -(-size // 2 ** downsamples)

    stem = self.spec.stem
    if stem.kernel_size[0] > 1 and self.causal:
      shapes['state_stem_stream_buffer'] = (
          batch, stem.kernel_size[0] - 1, scaled(height), scaled(width), 3)
    downsamples += 1
    split = self.conv_type != '3d'
    for block in self.blocks:
      prefix = block.state_prefix
      spatial_stride = block.strides[1] > 1
      if spatial_stride and split:
        downsamples += 1
      if block.kernel_size[0] > 1 and self.causal:
        shapes[f'{prefix}_stream_buffer'] = (
            batch, block.kernel_size[0] - 1, scaled(height), scaled(width),
            block.expand_filters)
      if self.se_type in ('3d', '2plus3d'):
        shapes[f'{prefix}_pool_buffer'] = (batch, 1, 1, 1,
                                           block.expand_filters)
        shapes[f'{prefix}_pool_frame_count'] = (1,)
      if self.use_positional_encoding and self.causal:
        shapes[f'{prefix}_pos_enc_frame_count'] = (1,)
      if spatial_stride and not split:
        downsamples += 1
    if self.head_pool is not None:
      shapes['state_head_pool_buffer'] = (batch, 1, 1, 1, self.output_filters)
      shapes['state_head_pool_frame_count'] = (1,)
    return shapes

  def init_states(self, input_shape: Sequence[int]) -> States:
    """Zero stream states for chunks of `input_shape`; see `state_shapes`."""
    return {
        name: ops.zeros(shape, 'int32' if 'frame_count' in name else
                        self.compute_dtype)
        for name, shape in self.state_shapes(input_shape).items()
    }

  def get_config(self):
    return constructor_config(self, super().get_config())
