"""MoViNet video classifier: backbone + a new head, base or streaming."""

from typing import Dict

import keras
from keras import ops

from trainer.model import activations
from trainer.model.conv_block import ConvBlock
from trainer.model.movinet_backbone import MovinetBackbone

# Keyword arguments of the official `Movinet` constructor this model accepts.
BACKBONE_ARGS = (
    'model_id', 'causal', 'use_positional_encoding', 'conv_type', 'se_type',
    'activation', 'gating_activation', 'use_sync_bn', 'norm_momentum',
    'norm_epsilon', 'kernel_initializer', 'kernel_regularizer',
    'bias_regularizer', 'stochastic_depth_drop_rate', 'average_pooling_type')

# The official streaming recipe (the released `movinet_*_stream` weights).
STREAM_RECIPE = dict(causal=True, conv_type='2plus1d', se_type='2plus3d',
                     activation='hard_swish', gating_activation='hard_sigmoid')
POSITIONAL_ENCODING_MODELS = ('a3', 'a4', 'a5')


@keras.saving.register_keras_serializable(package='movinet')
class MovinetClassifier(keras.Model):
  """A MoViNet backbone with a classification head.

  The head is the official one: pointwise layer to `head_filters` with
  `classifier_activation`, dropout, pointwise layer to `num_classes`; logits
  are float32 under any dtype policy.

  Args:
    num_classes: number of output classes.
    dropout_rate: dropout before the last layer.
    classifier_activation: activation of the head's hidden layer.
    freeze_backbone: make the backbone non-trainable; its BatchNorm layers
      then run in inference mode, which is the transfer-learning recipe.
    **backbone_kwargs: `MovinetBackbone` arguments (`BACKBONE_ARGS`).

  Call:
    `logits = model(video)` with `video` of shape
    `(batch, frames, height, width, 3)`, float RGB in [0, 1]; or
    `logits, states = model({**states, 'image': chunk})` to stream, with
    `states` from `init_states` or from the previous call (missing states
    start at zero).
  """

  def __init__(self,
               num_classes: int,
               dropout_rate: float = 0.0,
               classifier_activation: str = 'swish',
               freeze_backbone: bool = False,
               **backbone_kwargs):
    name = backbone_kwargs.pop('name', None)
    dtype = backbone_kwargs.pop('dtype', None)
    trainable = backbone_kwargs.pop('trainable', True)
    unknown = sorted(set(backbone_kwargs) - set(BACKBONE_ARGS))
    if unknown:
      raise ValueError(
          f'Unknown MoViNet argument(s) {unknown}; the backbone accepts '
          f'{BACKBONE_ARGS}.')
    super().__init__(name=name, dtype=dtype, trainable=trainable)
    if not isinstance(num_classes, int) or num_classes < 1:
      raise ValueError(f'num_classes={num_classes!r} must be a positive int.')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate={dropout_rate!r} must be in [0, 1).')
    activations.get_activation(classifier_activation, 'classifier_activation')
    if backbone_kwargs.get('average_pooling_type', '3d') != '3d':
      raise ValueError('A classifier needs average_pooling_type=\'3d\'; got '
                       f'{backbone_kwargs["average_pooling_type"]!r}.')
    self.num_classes = num_classes
    self.dropout_rate = dropout_rate
    self.classifier_activation = classifier_activation
    self.freeze_backbone = freeze_backbone
    self.backbone_kwargs = dict(backbone_kwargs)

    self.backbone = MovinetBackbone(name='backbone', dtype=self.dtype_policy,
                                    **backbone_kwargs)
    self.backbone.trainable = not freeze_backbone
    conv_args = dict(kernel_size=1, use_bias=True, use_batch_norm=False,
                     conv_type=self.backbone.conv_type,
                     dtype=self.dtype_policy)
    self.head = ConvBlock(
        self.backbone.head_filters, activation=classifier_activation,
        kernel_initializer=self.backbone.kernel_initializer,
        kernel_regularizer=self.backbone.kernel_regularizer,
        bias_regularizer=self.backbone.bias_regularizer, name='head',
        **conv_args)
    self.dropout = keras.layers.Dropout(dropout_rate, name='dropout',
                                        dtype=self.dtype_policy)
    self.classifier = ConvBlock(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name='classifier', **conv_args)

  def build(self, input_shape):
    if isinstance(input_shape, dict):
      input_shape = input_shape['image']
    self.backbone.build(input_shape)
    pooled = (input_shape[0], 1, 1, 1, self.backbone.output_filters)
    self.head.build(pooled)
    self.classifier.build(pooled[:-1] + (self.backbone.head_filters,))
    self.built = True

  def call(self, inputs, training=None):
    streaming = isinstance(inputs, dict)
    if streaming:
      if 'image' not in inputs:
        raise ValueError("A dict input needs the video under 'image'; got "
                         f'keys {sorted(inputs)}.')
      states = {k: v for k, v in inputs.items() if k != 'image'}
      video = inputs['image']
    else:
      states, video = {}, inputs
    # A frozen backbone always runs in inference mode (BatchNorm statistics
    # and stochastic depth included); the head still trains.
    x, states = self.backbone(video, states,
                              training=False if self.freeze_backbone else
                              training)
    x, _ = self.head(x)
    x = self.dropout(x, training=training)
    x, _ = self.classifier(x)
    # (batch, 1, 1, 1, classes): reshaped, not squeezed, so that the call
    # traces with unknown frames, height and width (export).
    logits = ops.cast(ops.reshape(x, (-1, self.num_classes)), 'float32')
    return (logits, states) if streaming else logits

  def init_states(self, input_shape) -> Dict[str, object]:
    """Zero stream states for chunks of `input_shape`.

    Args:
      input_shape: `(batch, frames, height, width, 3)` of one chunk.

    Returns:
      A dict from state name (the official names) to a zero tensor.
    """
    return self.backbone.init_states(input_shape)

  def get_config(self):
    config = super().get_config()
    backbone_config = {
        key: value for key, value in self.backbone.get_config().items()
        if key not in ('name', 'trainable', 'dtype')}
    config.update({
        'num_classes': self.num_classes,
        'dropout_rate': self.dropout_rate,
        'classifier_activation': self.classifier_activation,
        'freeze_backbone': self.freeze_backbone,
        **backbone_config,
    })
    return config


def build_movinet_classifier(model_id: str,
                             num_classes: int,
                             stream: bool = False,
                             freeze_backbone: bool = False,
                             dropout_rate: float = 0.0,
                             classifier_activation: str = 'swish',
                             input_shape=(None, None, None, None, 3),
                             **overrides) -> MovinetClassifier:
  """Builds a MoViNet classifier with its variables created.

  Args:
    model_id: 'a0'..'a5' or 't0'.
    num_classes: number of output classes.
    stream: use the official streaming recipe (causal, '2plus1d',
      se '2plus3d', hard_swish / hard_sigmoid, positional encoding for
      a3-a5); otherwise the base recipe (non-causal '3d', swish / sigmoid).
    freeze_backbone: train the head only (see `MovinetClassifier`).
    dropout_rate: dropout before the last layer.
    classifier_activation: activation of the head's hidden layer.
    input_shape: video shape used to create the variables; only the last
      axis (3) matters.
    **overrides: `MovinetBackbone` arguments named as in the official
      `Movinet` constructor; they replace any part of the recipe.

  Returns:
    A built `MovinetClassifier`.
  """
  kwargs = {'model_id': model_id}
  if stream:
    kwargs.update(STREAM_RECIPE)
    kwargs['use_positional_encoding'] = model_id in POSITIONAL_ENCODING_MODELS
  kwargs.update(overrides)
  model = MovinetClassifier(num_classes, dropout_rate=dropout_rate,
                            classifier_activation=classifier_activation,
                            freeze_backbone=freeze_backbone, **kwargs)
  model.build(tuple(input_shape))
  return model
