"""The model and the optimizer of a run, from its typed config.

Both are built inside the strategy's scope (`trainer.Trainer`), so their
variables are placed (mirrored, or on the TPU) by the strategy.
"""

import math

from absl import logging
import keras

from trainer import settings
from trainer.model import SparseCrossentropy
from trainer.model import build_movinet_classifier
from trainer.model import load_official_checkpoint
from trainer.training.config import ModelConfig
from trainer.training.config import OptimizerConfig


def build_model(config: ModelConfig, num_classes: int) -> keras.Model:
  """A MoViNet classifier for `num_classes`, optionally from official weights.

  Raises:
    ValueError: a `pretrained` checkpoint that cannot be read or does not
      match the model (named).
  """
  model = build_movinet_classifier(
      config.model_id, num_classes, stream=config.stream,
      freeze_backbone=config.freeze_backbone,
      dropout_rate=config.dropout_rate, use_sync_bn=config.use_sync_bn,
      **config.backbone_overrides())
  if config.pretrained:
    try:
      load_official_checkpoint(model, config.pretrained, include_head=False)
    except ValueError as error:
      raise settings.SettingError(type(config).__name__, 'pretrained',
                                  config.pretrained, f'cannot be loaded: '
                                  f'{error}') from error
    logging.info('Loaded the backbone of %s.', config.pretrained)
  return model


def build_schedule(learning_rate: float, total_steps: int, schedule: str,
                   warmup_steps: int):
  """A learning rate per step: linear warmup to `learning_rate`, then constant
  or cosine decay to zero at `total_steps`."""
  if schedule == 'constant' and not warmup_steps:
    return learning_rate
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0 if warmup_steps else learning_rate,
      decay_steps=max(total_steps - warmup_steps, 1),
      alpha=1.0 if schedule == 'constant' else 0.0,
      warmup_target=learning_rate if warmup_steps else None,
      warmup_steps=warmup_steps)


def build_optimizer(config: OptimizerConfig, steps_per_epoch: int,
                    total_steps: int) -> keras.optimizers.Optimizer:
  """The optimizer and its learning-rate schedule, for a run of
  `total_steps` steps of `steps_per_epoch` per epoch."""
  # Rounded first: 1.1 epochs of 50 steps is 55 steps, not 56.
  warmup_steps = math.ceil(round(config.warmup_epochs * steps_per_epoch, 6))
  rate = build_schedule(config.learning_rate, total_steps, config.schedule,
                        warmup_steps)
  common = {'learning_rate': rate, 'clipnorm': config.clipnorm}
  if config.weight_decay is not None:
    common['weight_decay'] = config.weight_decay
  if config.name == 'adam':
    return keras.optimizers.Adam(**common)
  if config.name == 'adamw':
    return keras.optimizers.AdamW(**common)
  if config.name == 'sgd':
    return keras.optimizers.SGD(momentum=config.momentum, **common)
  return keras.optimizers.RMSprop(momentum=config.momentum, **common)


def compile_model(model: keras.Model, optimizer, num_classes: int,
                  label_smoothing: float = 0.0,
                  jit_compile: bool = False) -> None:
  """Compiles with the run's loss and metrics (in the strategy's scope)."""
  model.compile(
      optimizer=optimizer,
      loss=SparseCrossentropy(num_classes, label_smoothing),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy'),
               # Top-5 (trivially 1 with 5 classes or fewer).
               keras.metrics.SparseTopKCategoricalAccuracy(
                   k=min(5, num_classes), name='top5_accuracy')],
      jit_compile=jit_compile)
