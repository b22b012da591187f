"""The model and the optimizer of a run, configured by gin.

Both are built inside the strategy's scope by `training.loop`, so their
variables are placed (mirrored, or on the TPU) by the strategy.
"""

import math
from typing import Optional

from absl import logging
import gin
import keras

from trainer.model import MODEL_IDS
from trainer.model import build_movinet_classifier
from trainer.model import load_official_checkpoint

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop')
SCHEDULES = ('constant', 'cosine')


def check_model_id(model_id: str) -> None:
  if model_id not in MODEL_IDS:
    raise ValueError(f'build_model.model_id={model_id!r} is not one of '
                     f'{", ".join(MODEL_IDS)}.')


@gin.configurable
def build_model(num_classes: int,
                model_id: str = 'a0',
                stream: bool = False,
                pretrained: Optional[str] = None,
                freeze_backbone: bool = False,
                dropout_rate: float = 0.2,
                use_sync_bn: bool = False,
                **overrides) -> keras.Model:
  """A MoViNet classifier for `num_classes`, optionally from official weights.

  Args:
    num_classes: output classes (the dataset's labels).
    model_id: 'a0'..'a5' or 't0'.
    stream: the streaming variant (causal; can run frame by frame after
      training); whole clips are trained either way.
    pretrained: an official checkpoint (prefix, directory, `.tar.gz`, or URL
      of one) whose backbone is loaded; the head is new, sized for
      `num_classes`. None trains from scratch.
    freeze_backbone: train the head only; the backbone's BatchNorm then runs
      in inference mode.
    dropout_rate: dropout before the last layer.
    use_sync_bn: BatchNorm statistics over all replicas (several GPUs or TPU
      cores) instead of each replica's share of the batch.
    **overrides: further `MovinetBackbone` arguments (e.g. `depth_multiplier`).

  Raises:
    ValueError: an unknown model id or argument, or a `pretrained` checkpoint
      that cannot be read or does not match the model (named).
  """
  check_model_id(model_id)
  model = build_movinet_classifier(
      model_id, num_classes, stream=stream, freeze_backbone=freeze_backbone,
      dropout_rate=dropout_rate, use_sync_bn=use_sync_bn, **overrides)
  if pretrained:
    try:
      load_official_checkpoint(model, pretrained, include_head=False)
    except ValueError as error:
      raise ValueError(f'build_model.pretrained={pretrained!r}: {error}'
                       ) from error
    logging.info('Loaded the backbone of %s.', pretrained)
  return model


def _check_choice(binding: str, value: str, choices) -> None:
  if value not in choices:
    raise ValueError(f'{binding}={value!r} is not one of {", ".join(choices)}.')


def build_schedule(learning_rate: float, total_steps: int, schedule: str,
                   warmup_steps: int):
  """A learning rate per step: linear warmup to `learning_rate`, then constant
  or cosine decay to zero at `total_steps`."""
  _check_choice('build_optimizer.schedule', schedule, SCHEDULES)
  if warmup_steps < 0 or learning_rate <= 0:
    raise ValueError(
        f'build_optimizer.learning_rate={learning_rate} must be > 0 and the '
        f'warmup ({warmup_steps} steps) >= 0.')
  if schedule == 'constant' and not warmup_steps:
    return learning_rate
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0 if warmup_steps else learning_rate,
      decay_steps=max(total_steps - warmup_steps, 1),
      alpha=1.0 if schedule == 'constant' else 0.0,
      warmup_target=learning_rate if warmup_steps else None,
      warmup_steps=warmup_steps)


@gin.configurable
def build_optimizer(steps_per_epoch: int,
                    total_steps: int,
                    name: str = 'adam',
                    learning_rate: float = 1e-3,
                    schedule: str = 'constant',
                    warmup_epochs: float = 0.0,
                    weight_decay: Optional[float] = None,
                    momentum: float = 0.9,
                    clipnorm: Optional[float] = None
                    ) -> keras.optimizers.Optimizer:
  """The optimizer and its learning-rate schedule.

  Args:
    steps_per_epoch: training steps per epoch (set by the run).
    total_steps: training steps of the whole run (set by the run).
    name: 'adam', 'adamw', 'sgd' (with `momentum`) or 'rmsprop'.
    learning_rate: peak learning rate, for the GLOBAL batch.
    schedule: 'constant' or 'cosine' (decays to 0 at the last step).
    warmup_epochs: linear warmup from 0 over this many epochs (may be a
      fraction).
    weight_decay: decoupled weight decay (adamw default 0.004; others none).
    momentum: momentum of 'sgd' and 'rmsprop'.
    clipnorm: clip each gradient to this norm if set.
  """
  _check_choice('build_optimizer.name', name, OPTIMIZERS)
  if warmup_epochs < 0:
    raise ValueError(f'build_optimizer.warmup_epochs={warmup_epochs} must be '
                     '>= 0 (epochs of linear warmup).')
  # Rounded first: 1.1 epochs of 50 steps is 55 steps, not 56.
  warmup_steps = math.ceil(round(warmup_epochs * steps_per_epoch, 6))
  rate = build_schedule(learning_rate, total_steps, schedule, warmup_steps)
  common = {'learning_rate': rate, 'clipnorm': clipnorm}
  if weight_decay is not None:
    common['weight_decay'] = weight_decay
  if name == 'adam':
    return keras.optimizers.Adam(**common)
  if name == 'adamw':
    return keras.optimizers.AdamW(**common)
  if name == 'sgd':
    return keras.optimizers.SGD(momentum=momentum, **common)
  return keras.optimizers.RMSprop(momentum=momentum, **common)
