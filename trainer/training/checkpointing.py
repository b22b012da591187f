"""Checkpoints for exact resume after preemption.

A checkpoint holds every variable of the model (weights, BatchNorm
statistics, dropout seed states), of the optimizer (slots, iteration count),
the running training metrics of the current epoch, and the run's position:
the epoch and the steps done in it. The training data of an epoch is a fixed
sequence (`VideoInputs.train_dataset`), so resuming at that position trains
on exactly the batches not trained on yet, none twice and none skipped.

Saving: the run's callback (`callback.RunCallback`) saves every
`run.checkpoint_every_steps` steps, at each epoch's end, and when SIGTERM
arrives (`preemption`). A SIGKILL therefore loses at most
`run.checkpoint_every_steps` steps. TensorFlow writes a checkpoint's files
under temporary names and renames them into place.

Damaged state: the newest checkpoint that can be read is used, whatever the
`checkpoint` state file says (a preemption in the middle of a save to a
bucket can leave a checkpoint without its `.index`, or the state file cut
short); each unreadable one is named in the log. A new checkpoint is read
back before older ones beyond the last `keep` are deleted. If checkpoints
exist and none can be read, the run stops (`UnreadableCheckpointsError`)
instead of silently starting again from step 0.

Each checkpoint also holds the run's identity (`run_identity`) as JSON, so a
missing or edited `run.json` is checked against it.
"""

import dataclasses
import json
import math
import os
import re
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from trainer import files
from trainer.training import run_identity

CHECKPOINT_DIR = 'checkpoints'
_PROGRESS_KEYS = ('epoch', 'step_in_epoch', 'best_accuracy')
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_IDENTITY_KEY = f'run/identity{_VALUE_SUFFIX}'
# `CheckpointManager`'s names: ckpt-<step>.index, ckpt-<step>.data-*, and
# ckpt-<step>_temp/ while a save is in progress.
_CHECKPOINT_FILE = re.compile(
    r'^ckpt-(\d+)(\.index|\.data-\d+-of-\d+|_temp)/?$')


class UnreadableCheckpointsError(ValueError):
  """Checkpoints exist in `model_dir` and none of them can be read."""


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


def _numbered_files(directory: str) -> dict[int, list[str]]:
  """The files (and temporary folders) of each checkpoint, by step."""
  if not tf.io.gfile.isdir(directory):
    return {}
  found = {}
  for name in tf.io.gfile.listdir(directory):
    match = _CHECKPOINT_FILE.match(name)
    if match:
      found.setdefault(int(match.group(1)), []).append(
          os.path.join(directory, name.rstrip('/')))
  return found


def _check_readable(prefix: str) -> None:
  """Raises tf.errors.OpError or KeyError unless `prefix` can be read:
  its index, and its position and identity values from the data files."""
  reader = files.checkpoint_reader(prefix)
  for key in _PROGRESS_KEYS:
    reader.get_tensor(f'progress/{key}{_VALUE_SUFFIX}')
  if reader.has_tensor(_IDENTITY_KEY):
    json.loads(reader.get_tensor(_IDENTITY_KEY))


def _newest_readable(directory: str) -> tuple[Optional[str], list[str]]:
  """(prefix of the newest readable checkpoint or None, the problems of
  the newer ones that could not be read)."""
  problems = []
  for step, paths in sorted(_numbered_files(directory).items(), reverse=True):
    if all(path.endswith('_temp') for path in paths):
      continue  # a save interrupted before it wrote anything in place
    prefix = os.path.join(directory, f'ckpt-{step}')
    try:
      _check_readable(prefix)
    except (tf.errors.OpError, KeyError, ValueError) as error:
      problems.append(f'ckpt-{step} ({files.reason(error)[:200]})')
      continue
    return prefix, problems
  return None, problems


def read_identity(model_dir: str) -> Optional[run_identity.RunIdentity]:
  """The run identity in the newest readable checkpoint of `model_dir`
  (None if there is no checkpoint, or it predates identities)."""
  latest, _ = _newest_readable(os.path.join(model_dir, CHECKPOINT_DIR))
  if not latest:
    return None
  reader = files.checkpoint_reader(latest)
  if not reader.has_tensor(_IDENTITY_KEY):
    return None
  return run_identity.RunIdentity.from_json(
      json.loads(reader.get_tensor(_IDENTITY_KEY)))


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
               write_dir: Optional[str] = None,
               identity: Optional[run_identity.RunIdentity] = None):
    if keep < 1:
      raise ValueError(f'run.keep_checkpoints={keep} must be at least 1.')
    self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
    self.write_directory = os.path.join(write_dir or model_dir, CHECKPOINT_DIR)
    self.keep = keep
    self.identity = identity
    self._manager = None
    self._progress_variables = None
    self.metric_variables = []
    self.last_saved_step = None
    self._reported = set()

  def latest(self) -> Optional[str]:
    """The prefix of the newest readable checkpoint, or None if there is
    no checkpoint at all.

    Raises:
      UnreadableCheckpointsError: checkpoints exist and none can be read.
    """
    latest, problems = _newest_readable(self.directory)
    for problem in problems:
      if problem not in self._reported:
        self._reported.add(problem)
        logging.warning('Checkpoint %s cannot be read; %s.',
                        os.path.join(self.directory, problem),
                        'using an older one' if latest else 'none can')
    if not latest and problems:
      raise UnreadableCheckpointsError(
          f'No checkpoint in {self.directory} can be read: '
          f'{"; ".join(problems[:3])}. Move that folder away to train from '
          'the start on purpose, or use a new --model_dir.')
    return latest

  def read_progress(self, steps_per_epoch: int) -> Progress:
    """The newest checkpoint's position (the start if there is none)."""
    progress = Progress(steps_per_epoch)
    latest = self.latest()
    if latest:
      reader = files.checkpoint_reader(latest)
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
             for name, shape in files.checkpoint_reader(latest)
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
      latest = self.latest()
      if self.identity is not None and (not latest or files.checkpoint_reader(
          latest).has_tensor(_IDENTITY_KEY)):
        objects['run'] = tf.train.Checkpoint(identity=tf.Variable(
            json.dumps(self.identity.to_json(), sort_keys=True),
            trainable=False))
    checkpoint = tf.train.Checkpoint(**objects)
    # Nothing deleted by the manager: `save` rotates once it has read the
    # new checkpoint back.
    self._manager = tf.train.CheckpointManager(
        checkpoint, self.write_directory, max_to_keep=None)

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
    """Saves the attached objects at `progress`; returns the prefix.

    The new checkpoint is read back before older ones beyond `keep` are
    deleted.

    Raises:
      OSError: naming the folder, if the save fails (e.g. a full disk) or
        cannot be read back; what the failed save wrote is removed.
    """
    for key in _PROGRESS_KEYS:
      self._progress_variables[key].assign(getattr(progress, key))
    try:
      path = self._manager.save(checkpoint_number=progress.global_step)
    except (OSError, tf.errors.OpError) as error:
      self._remove_partial(progress.global_step)
      raise OSError(
          f'Could not save a checkpoint in {self.write_directory}: '
          f'{files.reason(error)}. Free space there (or fix the cause) and '
          'rerun the same command to resume from the previous '
          'checkpoint.') from error
    try:
      _check_readable(path)
    except (tf.errors.OpError, KeyError, ValueError) as error:
      raise OSError(f'The checkpoint just saved, {path}, cannot be read back '
                    f'({files.reason(error)[:200]}); no older '
                    'checkpoint was deleted.') from error
    self._rotate(progress.global_step)
    self.last_saved_step = progress.global_step
    level = logging.DEBUG if progress.step_in_epoch else logging.INFO
    logging.log(level, 'Saved checkpoint %s (epoch %d, step %d of it).', path,
                progress.epoch, progress.step_in_epoch)
    return path

  def _remove_partial(self, step: int) -> None:
    """Removes what a failed save of `step` left, unless a complete
    checkpoint of that step was there before."""
    for path in _numbered_files(self.write_directory).get(step, []):
      if path.endswith('_temp') or not tf.io.gfile.exists(
          os.path.join(self.write_directory, f'ckpt-{step}.index')):
        _remove(path)

  def _rotate(self, newest: int) -> None:
    """Deletes the checkpoints older than the last `keep` up to `newest`,
    and the temporary folders of interrupted saves."""
    numbered = _numbered_files(self.write_directory)
    older = sorted((step for step in numbered if step <= newest),
                   reverse=True)
    for step in older[self.keep:]:
      for path in numbered[step]:
        _remove(path)
    for step, paths in numbered.items():
      for path in paths:
        if path.endswith('_temp') and step != newest:
          _remove(path)
    kept = [os.path.join(self.write_directory, f'ckpt-{step}')
            for step in reversed(older[:self.keep])]
    tf.compat.v1.train.update_checkpoint_state(
        self.write_directory, kept[-1], all_model_checkpoint_paths=kept)


def _remove(path: str) -> None:
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  else:
    tf.io.gfile.remove(path)
