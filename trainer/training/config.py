"""The experiment a run trains: typed, frozen, checked once when made.

`ExperimentConfig` has four parts, each a frozen dataclass that checks its
own values in `__post_init__` and raises `trainer.settings.SettingError`
naming the setting (a wrong type included):

- `InputsConfig`: the prepared data, its splits and batches, and how clips
  are sampled (`trainer.data.sampling.Sampling`);
- `ModelConfig`: the MoViNet and the weights it starts from;
- `OptimizerConfig`: the optimizer and its learning-rate schedule;
- `RunConfig`: epochs, seed, precision, checkpoints, summaries.

Users set them by the names in `SETTING_NAMES` (`build_inputs.batch_size =
16` in a gin file; `movinet-train` binds them, see `trainer.configure`). Run
identity and TensorBoard's hyperparameters are read from these objects.
"""

import dataclasses
import os
from typing import Any, Optional

from trainer import settings
from trainer.data.sampling import Sampling
from trainer.model import MODEL_IDS

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop')
SCHEDULES = ('constant', 'cosine')
POLICIES = ('float32', 'mixed_float16', 'mixed_bfloat16')
_FLOAT32_BYTES = 4


@dataclasses.dataclass(frozen=True)
class InputsConfig:
  """Where the clips come from, how they are batched and sampled.

  Attributes:
    data_dir: a `movinet-prepare --output_dir` (local or gs://).
    train_split: split trained on.
    eval_split: split validated on each epoch and evaluated at the end.
    batch_size: GLOBAL training batch, split over the replicas (clips).
    per_replica_batch_size: if set, the global batch is this times the
      replicas (platform files use it: the batch then grows with the slice).
    eval_batch_size: GLOBAL evaluation batch; the training batch if None.
    eval_clips: clips per video at evaluation, predictions averaged.
    eval_drop_remainder: drop the last partial evaluation batch, for static
      shapes (TPU); its clips are then not evaluated.
    shuffle_buffer: records in the training shuffle buffer.
    prepared_fps: the rate, frames per second, `data_dir` must have been
      prepared at (`movinet-prepare --fps`): `sampling.frame_step` counts
      frames of the prepared videos, so the same step spans another time at
      another rate. None: not checked.
    sampling: frames per clip, their spacing, size, resizing and flips.
  """
  data_dir: str
  train_split: str = 'train'
  eval_split: str = 'test'
  batch_size: int = 8
  per_replica_batch_size: Optional[int] = None
  eval_batch_size: Optional[int] = None
  eval_clips: int = 1
  eval_drop_remainder: bool = False
  shuffle_buffer: int = 256
  prepared_fps: Optional[float] = None
  sampling: Sampling = Sampling()

  def __post_init__(self):
    settings.check_types(self)
    settings.check_at_least(self, 1, 'batch_size', 'per_replica_batch_size',
                            'eval_batch_size', 'eval_clips', 'shuffle_buffer')
    if self.prepared_fps is not None and not self.prepared_fps > 0:
      raise settings.SettingError(
          type(self).__name__, 'prepared_fps', self.prepared_fps,
          'must be a positive rate in frames per second, or None')

  def global_batch_size(self, num_replicas: int) -> int:
    """The training batch over all replicas.

    Raises:
      SettingError: `batch_size` is not a multiple of `num_replicas`.
    """
    if self.per_replica_batch_size is not None:
      return self.per_replica_batch_size * num_replicas
    if self.batch_size % num_replicas:
      raise settings.SettingError(
          type(self).__name__, 'batch_size', self.batch_size,
          f'(the global batch) must be a multiple of the {num_replicas} '
          'replicas; or set per_replica_batch_size instead')
    return self.batch_size

  def check_memory(self, num_replicas: int, num_workers: int,
                   memory_bytes: Optional[int] = None) -> None:
    """Refuses batches whose clips alone cannot fit in this machine's
    memory (as float32, before the model's activations, which need more).

    Raises:
      SettingError: naming the arithmetic.
    """
    memory_bytes = memory_bytes or _physical_memory()
    sampling = self.sampling
    frame_bytes = sampling.image_size**2 * 3 * _FLOAT32_BYTES
    train = -(-self.global_batch_size(num_replicas) // num_workers)
    evaluation = -(-(self.eval_batch_size or self.global_batch_size(
        num_replicas)) // num_workers) * self.eval_clips
    clips = max(train, evaluation)
    needed = clips * sampling.num_frames * frame_bytes
    if needed <= memory_bytes:
      return
    # Named: the setting furthest above its default (the message gives all).
    name = max((('num_frames', sampling.num_frames / 8),
                ('image_size', (sampling.image_size / 172)**2),
                ('batch_size', clips / 8)), key=lambda item: item[1])[0]
    owner = self if name == 'batch_size' else sampling
    raise settings.SettingError(
        type(owner).__name__, name, getattr(owner, name),
        f'makes one batch of this worker {clips} clips x '
        f'{sampling.num_frames} frames x {sampling.image_size} x '
        f'{sampling.image_size} pixels x 3 colours x 4 bytes = '
        f'{needed / 2**30:.1f} GiB, more than the {memory_bytes / 2**30:.1f} '
        'GiB of memory of this machine; lower num_frames, image_size or '
        'the batch size')


def _physical_memory() -> int:
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The MoViNet classifier and the weights it starts from.

  Attributes:
    model_id: 'a0'..'a5' or 't0'.
    stream: the streaming variant (causal; can run frame by frame after
      training); whole clips are trained either way.
    pretrained: an official checkpoint (prefix, directory, `.tar.gz`, or URL
      of one) whose backbone is loaded; the head is new. None trains from
      scratch.
    freeze_backbone: train the head only; the backbone's BatchNorm then runs
      in inference mode.
    dropout_rate: dropout before the last layer.
    use_sync_bn: BatchNorm statistics over all replicas (several GPUs or TPU
      cores) instead of each replica's share of the batch.
    norm_momentum: BatchNorm's moving-average momentum (None: the recipe's).
    norm_epsilon: BatchNorm's epsilon (None: the recipe's).
    stochastic_depth_drop_rate: stochastic depth (None: the recipe's).
  """
  model_id: str = 'a0'
  stream: bool = False
  pretrained: Optional[str] = None
  freeze_backbone: bool = False
  dropout_rate: float = 0.2
  use_sync_bn: bool = False
  norm_momentum: Optional[float] = None
  norm_epsilon: Optional[float] = None
  stochastic_depth_drop_rate: Optional[float] = None

  def __post_init__(self):
    settings.check_types(self)
    settings.check_choice(self, 'model_id', MODEL_IDS)
    if not 0.0 <= self.dropout_rate < 1.0:
      raise settings.SettingError(type(self).__name__, 'dropout_rate',
                                  self.dropout_rate, 'must lie in [0, 1)')

  def backbone_overrides(self) -> dict[str, Any]:
    """The `MovinetBackbone` arguments set here (the recipe's otherwise)."""
    return {name: getattr(self, name)
            for name in ('norm_momentum', 'norm_epsilon',
                         'stochastic_depth_drop_rate')
            if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The optimizer and its learning-rate schedule.

  Attributes:
    name: 'adam', 'adamw', 'sgd' (with `momentum`) or 'rmsprop'.
    learning_rate: peak learning rate, for the GLOBAL batch.
    schedule: 'constant' or 'cosine' (decays to 0 at the last step).
    warmup_epochs: linear warmup from 0 over this many epochs (may be a
      fraction).
    weight_decay: decoupled weight decay (adamw default 0.004; others none).
    momentum: momentum of 'sgd' and 'rmsprop'.
    clipnorm: clip each gradient to this norm if set.
  """
  name: str = 'adam'
  learning_rate: float = 1e-3
  schedule: str = 'constant'
  warmup_epochs: float = 0.0
  weight_decay: Optional[float] = None
  momentum: float = 0.9
  clipnorm: Optional[float] = None

  def __post_init__(self):
    settings.check_types(self)
    settings.check_choice(self, 'name', OPTIMIZERS)
    settings.check_choice(self, 'schedule', SCHEDULES)
    if self.learning_rate <= 0:
      raise settings.SettingError(type(self).__name__, 'learning_rate',
                                  self.learning_rate, 'must be > 0')
    if self.warmup_epochs < 0:
      raise settings.SettingError(
          type(self).__name__, 'warmup_epochs', self.warmup_epochs,
          'must be >= 0 (epochs of linear warmup)')


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """How long, how exactly, and what a run keeps.

  Attributes:
    epochs: passes over the training split.
    train_steps: if set, train this many steps instead of `epochs` epochs.
    seed: seeds weights, data order and augmentation; None picks one (kept
      in `run.json`, so a resume continues the same sequence).
    deterministic: repeatable to the last bit given the seed (TensorFlow op
      determinism and ordered input), at some speed.
    mixed_precision: 'float32', 'mixed_float16' (loss scaling is automatic)
      or 'mixed_bfloat16'; logits and loss stay float32.
    jit_compile: compile the training step with XLA.
    label_smoothing: of the cross-entropy targets.
    checkpoint_every_steps: steps between checkpoints (and the most a
      SIGKILL can lose); also saved at each epoch's end and on SIGTERM.
    keep_checkpoints: how many checkpoints to keep.
    summary_every_steps: steps between TensorBoard training summaries.
    validate: evaluate the eval split after each epoch (and keep the best).
    verbose: Keras' progress bar (1), one line per epoch (2) or nothing (0).
    preemption_poll_steps: across several workers, steps between asking all
      of them whether one got SIGTERM (a collective op); a preempted run
      stops within this many steps. One machine checks every step.
  """
  epochs: int = 10
  train_steps: Optional[int] = None
  seed: Optional[int] = None
  deterministic: bool = False
  mixed_precision: str = 'float32'
  jit_compile: bool = False
  label_smoothing: float = 0.0
  checkpoint_every_steps: int = 100
  keep_checkpoints: int = 3
  summary_every_steps: int = 10
  validate: bool = True
  verbose: int = 1
  preemption_poll_steps: int = 10

  def __post_init__(self):
    settings.check_types(self)
    settings.check_choice(self, 'mixed_precision', POLICIES)
    settings.check_at_least(self, 1, 'epochs', 'train_steps',
                            'checkpoint_every_steps', 'keep_checkpoints',
                            'summary_every_steps', 'preemption_poll_steps')
    settings.check_at_least(self, 0, 'seed')
    if not 0.0 <= self.label_smoothing < 1.0:
      raise settings.SettingError(type(self).__name__, 'label_smoothing',
                                  self.label_smoothing, 'must lie in [0, 1)')


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything a run trains, by part."""
  inputs: InputsConfig
  model: ModelConfig = ModelConfig()
  optimizer: OptimizerConfig = OptimizerConfig()
  run: RunConfig = RunConfig()

  def settings(self) -> dict[str, Any]:
    """Every setting, named as users set it (`build_inputs.batch_size`)."""
    values = {}
    for part in (self.inputs, self.inputs.sampling, self.model,
                 self.optimizer, self.run):
      for field in dataclasses.fields(part):
        if not dataclasses.is_dataclass(getattr(part, field.name)):
          values[f'{SETTING_NAMES[type(part).__name__]}.{field.name}'] = (
              getattr(part, field.name))
    return dict(sorted(values.items()))

  def hparams(self) -> dict[str, Any]:
    """The settings TensorBoard's HParams can show (scalars, not None)."""
    return {name: value for name, value in self.settings().items()
            if isinstance(value, (bool, int, float, str))}

  def describe(self) -> str:
    """The settings as gin bindings, one a line (a gin file that
    `movinet-train --gin_file` reads back)."""
    return ''.join(f'{name} = {value!r}\n'
                   for name, value in self.settings().items())


# The name each part is set by, e.g. `build_inputs.batch_size = 16`.
SETTING_NAMES = {
    'InputsConfig': 'build_inputs',
    'Sampling': 'build_inputs',
    'ModelConfig': 'build_model',
    'OptimizerConfig': 'build_optimizer',
    'RunConfig': 'run',
}
