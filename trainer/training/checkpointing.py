"""Checkpoints for exact resume after preemption.

A checkpoint holds every variable of the model (weights, BatchNorm
statistics, dropout seed states), of the optimizer (slots, iteration count),
the running training metrics of the current epoch, and the run's position:
the epoch and the steps done in it. The training data of an epoch is a fixed
sequence (`VideoInputs.train_dataset`), so resuming at that position trains
on exactly the batches not trained on yet, none twice and none skipped.

Saving: every `every_steps` steps, at each epoch's end, and when SIGTERM
arrives (how preemptible VMs and TPU VMs announce preemption; the run then
stops with exit status `EXIT_PREEMPTED`). A SIGKILL therefore loses at most
`every_steps` steps. TensorFlow writes a checkpoint's files under temporary
names and then points the `checkpoint` index file at it with an atomic
rename, so a kill mid-save leaves the previous checkpoint in use. Only the
last `keep` checkpoints are kept.
"""

import dataclasses
import math
import os
import re
import signal
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from trainer.training import multi_worker

# Exit status of a run stopped by SIGTERM after saving (EX_TEMPFAIL: "try
# again"); rerunning the same command resumes.
EXIT_PREEMPTED = 75

CHECKPOINT_DIR = 'checkpoints'
_PROGRESS_KEYS = ('epoch', 'step_in_epoch', 'best_accuracy')
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


@dataclasses.dataclass
class Progress:
  """Where a run stands: `step_in_epoch` steps of `epoch` are done."""
  steps_per_epoch: int
  epoch: int = 0
  step_in_epoch: int = 0
  best_accuracy: float = -math.inf
  preempted: bool = False

  @property
  def global_step(self) -> int:
    return self.epoch * self.steps_per_epoch + self.step_in_epoch


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved and the run stopped."""


class PreemptionWatcher:
  """Turns SIGTERM into a flag checked between steps, while active."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint after this step, then '
                    'stopping (exit status %d).', EXIT_PREEMPTED)
    self.requested = True

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info):
    signal.signal(signal.SIGTERM, self._previous)


def _reader(prefix: str):
  """A reader of the checkpoint `prefix`.

  Not `tf.train.load_checkpoint`, which first asks whether `prefix` is a
  directory: a file system without real directories (TensorFlow's ram://,
  which the tests use in place of gs://) says yes to any prefix of a file's
  name ('ckpt-2' of 'ckpt-2.index').
  """
  return tf.compat.v1.train.NewCheckpointReader(prefix)


def _by_path(variables) -> dict[str, tf.Variable]:
  """The backing TensorFlow variables of Keras variables, keyed by path.

  Keras numbers automatic names per process ('movinet_classifier_1',
  'seed_generator_2'), so the numbers are dropped: the same model built in
  any process gets the same keys (repeats are told apart by order).
  """
  named = {}
  for variable in variables:
    parts = [re.sub(r'_\d+$', '', part) for part in variable.path.split('/')]
    key = '.'.join(parts)
    while key in named:
      key += '_'
    named[key] = variable.value if hasattr(variable, 'value') else variable
  return named


class TrainingCheckpoint:
  """The checkpoints in `model_dir/checkpoints` of one model and optimizer.

  Restores from `model_dir`; saves into `write_dir` (by default `model_dir`;
  a temporary directory on the workers that are not the chief).
  """

  def __init__(self, model_dir: str, keep: int = 3,
               write_dir: Optional[str] = None):
    if keep < 1:
      raise ValueError(f'run.keep_checkpoints={keep} must be at least 1.')
    self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
    self.write_directory = os.path.join(write_dir or model_dir, CHECKPOINT_DIR)
    self.keep = keep
    self._manager = None
    self._progress_variables = None
    self.metric_variables = []
    self.last_saved_step = None

  def latest(self) -> Optional[str]:
    """The prefix of the newest checkpoint, or None."""
    return tf.train.latest_checkpoint(self.directory)

  def read_progress(self, steps_per_epoch: int) -> Progress:
    """The newest checkpoint's position (the start if there is none)."""
    progress = Progress(steps_per_epoch)
    latest = self.latest()
    if latest:
      reader = _reader(latest)
      for key in _PROGRESS_KEYS:
        value = reader.get_tensor(f'progress/{key}{_VALUE_SUFFIX}')
        setattr(progress, key, type(getattr(progress, key))(value))
    return progress

  def check_fits(self, model: keras.Model) -> None:
    """Raises ValueError unless the newest checkpoint holds exactly the
    model's variables, with their shapes (checked before anything is written).
    """
    latest = self.latest()
    if not latest:
      return
    # Checkpoint keys escape '.' in object names as '..'.
    saved = {name[len('model/'):-len(_VALUE_SUFFIX)].replace('..', '.'): shape
             for name, shape in _reader(latest)
             .get_variable_to_shape_map().items()
             if name.startswith('model/') and name.endswith(_VALUE_SUFFIX)}
    wanted = {name: list(variable.shape)
              for name, variable in _by_path(model.variables).items()}
    problems = [f'{name} missing' for name in sorted(set(wanted) - set(saved))]
    problems += [f'{name} not in the model'
                 for name in sorted(set(saved) - set(wanted))]
    problems += [f'{name} saved as {saved[name]}, model has {shape}'
                 for name, shape in sorted(wanted.items())
                 if name in saved and list(saved[name]) != shape]
    if problems:
      shown = '; '.join(problems[:5])
      more = f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''
      raise ValueError(
          f'Checkpoint {latest} does not fit this model: {shown}{more}. Use '
          'the settings it was trained with, or a new --model_dir.')

  def attach(self, model: keras.Model, weights_only: bool = False) -> None:
    """Tracks `model` (and its optimizer and metrics unless `weights_only`);
    call when their variables exist, e.g. from `on_train_begin`."""
    objects = {'model': _by_path(model.variables)}
    if not weights_only:
      self.metric_variables = list(model.metrics_variables)
      # By position: Keras names optimizer slots after the model's
      # (process-numbered) variable names; their order is fixed.
      objects['optimizer'] = {f'{index:05d}': variable.value
                              for index, variable in
                              enumerate(model.optimizer.variables)}
      objects['metrics'] = _by_path(self.metric_variables)
      self._progress_variables = {
          'epoch': tf.Variable(0, dtype=tf.int64, trainable=False),
          'step_in_epoch': tf.Variable(0, dtype=tf.int64, trainable=False),
          'best_accuracy': tf.Variable(-math.inf, dtype=tf.float64,
                                       trainable=False),
      }
      objects['progress'] = tf.train.Checkpoint(**self._progress_variables)
    checkpoint = tf.train.Checkpoint(**objects)
    self._manager = tf.train.CheckpointManager(
        checkpoint, self.write_directory, max_to_keep=self.keep)

  def restore(self, weights_only: bool = False) -> list[np.ndarray]:
    """Loads the newest checkpoint into the attached objects.

    Returns:
      The saved values of the epoch's running metrics (to put back after
      Keras resets them at the epoch's start); empty if `weights_only`.

    Raises:
      ValueError: the checkpoint does not fit the model (named).
    """
    latest = self.latest()
    status = self._manager.checkpoint.restore(latest)
    try:
      if weights_only:
        status.expect_partial().assert_existing_objects_matched()
      else:
        status.assert_existing_objects_matched()
    except AssertionError as error:
      raise ValueError(
          f'Checkpoint {latest} does not fit this model: '
          f'{str(error).splitlines()[0][:300]}. Use the settings it was '
          'trained with, or a new --model_dir.') from error
    logging.info('Restored %s.', latest)
    return [v.numpy() for v in self.metric_variables]

  def save(self, progress: Progress) -> str:
    for key in _PROGRESS_KEYS:
      self._progress_variables[key].assign(getattr(progress, key))
    path = self._manager.save(checkpoint_number=progress.global_step)
    self.last_saved_step = progress.global_step
    level = logging.DEBUG if progress.step_in_epoch else logging.INFO
    logging.log(level, 'Saved checkpoint %s (epoch %d, step %d of it).', path,
                progress.epoch, progress.step_in_epoch)
    return path


class CheckpointCallback(keras.callbacks.Callback):
  """Counts steps into `progress`, saves checkpoints, and stops on SIGTERM.

  Order among the callbacks: before any that reads `progress` at a batch's
  end (summaries), after any that updates `progress.best_accuracy` at an
  epoch's end (so the epoch's checkpoint records it).
  """

  def __init__(self, checkpoint: TrainingCheckpoint, progress: Progress,
               every_steps: int, watcher: PreemptionWatcher,
               total_steps: int):
    super().__init__()
    self.checkpoint = checkpoint
    self.progress = progress
    self.every_steps = every_steps
    self.watcher = watcher
    self.total_steps = total_steps
    self._attached = False
    self._metric_values = []

  def on_train_begin(self, logs=None):
    if self._attached:
      return
    self.checkpoint.attach(self.model)
    self._attached = True
    if self.checkpoint.latest():
      self._metric_values = self.checkpoint.restore()

  def on_epoch_begin(self, epoch, logs=None):
    # A resumed epoch continues its running metrics where they were saved.
    if self._metric_values and self.progress.step_in_epoch:
      for variable, value in zip(self.checkpoint.metric_variables,
                                 self._metric_values):
        variable.assign(value)
    self._metric_values = []

  def on_train_batch_end(self, batch, logs=None):
    self.progress.step_in_epoch += 1
    ends_epoch = (self.progress.step_in_epoch >= self.progress.steps_per_epoch
                  or self.progress.global_step >= self.total_steps)
    if self._preempted():
      self._stop()
    elif self.progress.global_step % self.every_steps == 0 and not ends_epoch:
      # (An epoch's last step is saved at the epoch's end, after validation,
      # under the same number: saving twice would rewrite a live checkpoint.)
      self.checkpoint.save(self.progress)

  def on_test_begin(self, logs=None):
    self._stop_evaluating_if_preempted()

  def on_test_batch_end(self, batch, logs=None):
    self._stop_evaluating_if_preempted()

  def _stop_evaluating_if_preempted(self):
    # Validation can outlast a preemption notice; what it would find is
    # thrown away anyway (the epoch is not finished or is saved already).
    if self._preempted():
      self.model.stop_evaluating = True

  def on_epoch_end(self, epoch, logs=None):
    if self.model.stop_training:
      return
    if self.progress.step_in_epoch >= self.progress.steps_per_epoch:
      self.progress.epoch += 1
      self.progress.step_in_epoch = 0
    # else `run.train_steps` ended the run inside this epoch.
    self.checkpoint.save(self.progress)
    if self._preempted():
      self._stop()

  def _preempted(self) -> bool:
    # Under multi-worker training all workers stop at the same step, even
    # though SIGTERM may reach only one of them.
    return multi_worker.any_worker(self.model.distribute_strategy,
                                   self.watcher.requested)

  def _stop(self):
    if self.checkpoint.last_saved_step != self.progress.global_step:
      self.checkpoint.save(self.progress)
    self.progress.preempted = True
    self.model.stop_training = True
