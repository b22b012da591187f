"""Checkpoints for exact resume, with a tiny real Keras model, in-process.

The model (a dense layer and BatchNorm, SGD with momentum) is compiled in a
`OneDeviceStrategy` scope as `training.loop` compiles it, so Keras creates
the optimizer's slots and the metrics before `on_train_begin`. Weights come
from seeded initializers; no global seed is set.
"""

import math
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training import run_helpers
from trainer.training import checkpointing
from trainer.training import preemption
from trainer.training import run_identity

STEPS_PER_EPOCH = 3
FEATURES = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(6, 4)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def tiny_model(units: int = 3, batch_norm: bool = True,
               strategy=None) -> keras.Model:
  """4 features -> `units` logits, compiled with SGD and accuracy in the
  scope of `strategy` (by default one device, the CPU)."""
  strategy = strategy or tf.distribute.OneDeviceStrategy('/cpu:0')
  with strategy.scope():
    layers = [keras.Input((4,)), keras.layers.Dense(
        units, kernel_initializer=keras.initializers.RandomNormal(seed=1))]
    if batch_norm:
      layers.append(keras.layers.BatchNormalization())
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
  return model


def epoch_dataset(skip_steps: int = 0) -> tf.data.Dataset:
  """The same 3 batches every epoch, less the first `skip_steps`."""
  return tf.data.Dataset.from_tensor_slices((FEATURES, LABELS)).batch(
      2).skip(skip_steps)


class _SignalAt(keras.callbacks.Callback):
  """Sends this process a real `signum` at the end of global step `step`."""

  def __init__(self, progress, step, signum):
    super().__init__()
    self.progress = progress
    self.step = step
    self.signum = signum

  def on_train_batch_end(self, batch, logs=None):
    # Runs before the checkpoint callback has counted this batch.
    if self.progress.global_step + 1 == self.step:
      os.kill(os.getpid(), self.signum)


class _EpochLogs(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.logs = []

  def on_epoch_end(self, epoch, logs=None):
    self.logs.append((epoch, dict(logs)))


def train(model_dir, total_steps, every_steps=2, keep=10, sigterm_at=None,
          model=None, signum=signal.SIGTERM):
  """Trains as `training.loop` does: one `fit` per epoch, from the newest
  checkpoint, skipping the batches of the epoch done already."""
  model = model or tiny_model()
  checkpoint = checkpointing.TrainingCheckpoint(model_dir, keep=keep)
  progress = checkpoint.read_progress(STEPS_PER_EPOCH)
  watcher = preemption.PreemptionWatcher()
  epoch_logs = _EpochLogs()
  callbacks = [run_helpers.run_callback(
      model_dir, checkpoint, progress, total_steps=total_steps,
      checkpoint_every_steps=every_steps, watcher=watcher), epoch_logs]
  if sigterm_at:
    callbacks.insert(0, _SignalAt(progress, sigterm_at, signum))
  with watcher:
    while progress.global_step < total_steps and not progress.preempted:
      epoch = progress.epoch
      steps = (min(STEPS_PER_EPOCH, total_steps - epoch * STEPS_PER_EPOCH)
               - progress.step_in_epoch)
      model.fit(epoch_dataset(progress.step_in_epoch), epochs=epoch + 1,
                initial_epoch=epoch, steps_per_epoch=steps,
                callbacks=callbacks, verbose=0, shuffle=False)
  return model, progress, epoch_logs.logs


def saved_numbers(model_dir) -> list[int]:
  directory = os.path.join(model_dir, checkpointing.CHECKPOINT_DIR)
  return sorted(int(name[len('ckpt-'):-len('.index')])
                for name in os.listdir(directory) if name.endswith('.index'))


def values(variables) -> list[np.ndarray]:
  return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def all_state(model) -> list[np.ndarray]:
  return values(model.variables + model.optimizer.variables
                + model.metrics_variables)


@pytest.fixture(scope='module')
def trained_dir(tmp_path_factory):
  """A model_dir with checkpoints 2, 3 and 4 of a 4-step run (epoch 1,
  step 1), and the model that wrote them."""
  model_dir = str(tmp_path_factory.mktemp('trained'))
  model, progress, _ = train(model_dir, total_steps=4)
  assert (progress.epoch, progress.step_in_epoch) == (1, 1)
  return model_dir, model


@pytest.mark.parametrize('steps_per_epoch, epoch, step_in_epoch, global_step',
                         [(5, 0, 0, 0), (5, 0, 4, 4), (5, 2, 3, 13),
                          (1, 7, 0, 7)])
def test_progress_global_step(steps_per_epoch, epoch, step_in_epoch,
                              global_step):
  progress = checkpointing.Progress(steps_per_epoch, epoch, step_in_epoch)
  assert progress.global_step == global_step


def test_progress_starts_at_the_beginning():
  progress = checkpointing.Progress(4)
  assert (progress.epoch, progress.step_in_epoch, progress.best_accuracy,
          progress.preempted) == (0, 0, -math.inf, False)


@pytest.mark.parametrize('keep', [0, -1])
def test_keep_must_be_positive(tmp_path, keep):
  with pytest.raises(ValueError,
                     match=f'run.keep_checkpoints={keep} must be at least 1'):
    checkpointing.TrainingCheckpoint(str(tmp_path), keep=keep)


def test_directories(tmp_path):
  default = checkpointing.TrainingCheckpoint(str(tmp_path / 'run'))
  assert default.directory == str(tmp_path / 'run' / 'checkpoints')
  assert default.write_directory == default.directory
  worker = checkpointing.TrainingCheckpoint(
      str(tmp_path / 'run'), write_dir=str(tmp_path / 'worker'))
  assert worker.directory == str(tmp_path / 'run' / 'checkpoints')
  assert worker.write_directory == str(tmp_path / 'worker' / 'checkpoints')


def test_empty_model_dir_starts_from_the_beginning(tmp_path):
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path))
  assert checkpoint.latest() is None
  assert checkpoint.read_progress(7) == checkpointing.Progress(7)
  checkpoint.check_fits(tiny_model())  # nothing to disagree with
  assert os.listdir(tmp_path) == []


def test_restore_from_an_empty_model_dir_says_there_is_none(tmp_path):
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path))
  checkpoint.attach(tiny_model())
  with pytest.raises(ValueError, match=r'No checkpoint specified'):
    checkpoint.restore()


@pytest.mark.parametrize('progress', [
    checkpointing.Progress(3),
    checkpointing.Progress(3, epoch=2, step_in_epoch=1, best_accuracy=0.75),
    checkpointing.Progress(10, epoch=0, step_in_epoch=9, best_accuracy=0.0),
    checkpointing.Progress(4, epoch=1, step_in_epoch=0, best_accuracy=1 / 3),
], ids=['start', 'mid-epoch', 'zero-accuracy', 'epoch-end'])
def test_progress_round_trips(tmp_path, progress):
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path))
  checkpoint.attach(tiny_model())
  path = checkpoint.save(progress)
  assert path == str(tmp_path / 'checkpoints' / f'ckpt-{progress.global_step}')
  assert checkpoint.last_saved_step == progress.global_step
  read = checkpointing.TrainingCheckpoint(str(tmp_path)).read_progress(
      progress.steps_per_epoch)
  assert read == progress
  assert type(read.epoch) is int  # pylint: disable=unidiomatic-typecheck
  assert type(read.best_accuracy) is float  # pylint: disable=unidiomatic-typecheck


@pytest.mark.parametrize('keep, expected', [(1, [4]), (2, [3, 4]),
                                            (5, [1, 2, 3, 4])])
def test_only_the_last_keep_checkpoints_stay(tmp_path, keep, expected):
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path), keep=keep)
  checkpoint.attach(tiny_model())
  for step in (1, 2, 3, 4):
    checkpoint.save(checkpointing.Progress(10, step_in_epoch=step))
  assert saved_numbers(str(tmp_path)) == expected
  assert checkpoint.latest() == str(tmp_path / 'checkpoints' / 'ckpt-4')


def test_saves_go_to_the_write_dir(tmp_path):
  model_dir, write_dir = str(tmp_path / 'run'), str(tmp_path / 'worker')
  checkpoint = checkpointing.TrainingCheckpoint(model_dir, write_dir=write_dir)
  checkpoint.attach(tiny_model())
  checkpoint.save(checkpointing.Progress(3, epoch=1))
  assert saved_numbers(write_dir) == [3]
  assert not os.path.exists(model_dir)
  assert checkpoint.latest() is None  # reads the chief's model_dir only


def test_restore_brings_back_model_optimizer_and_metrics(trained_dir):
  model_dir, trained = trained_dir
  fresh = tiny_model()
  fresh.fit(epoch_dataset(), epochs=1, steps_per_epoch=1, verbose=0,
            shuffle=False)
  assert not all(np.array_equal(a, b) for a, b in
                 zip(all_state(fresh), all_state(trained)))
  checkpoint = checkpointing.TrainingCheckpoint(model_dir)
  checkpoint.attach(fresh)
  metric_values = checkpoint.restore()
  for got, saved in zip(all_state(fresh), all_state(trained), strict=True):
    np.testing.assert_array_equal(got, saved)
  assert int(fresh.optimizer.iterations.numpy()) == 4
  # The running metrics of the unfinished epoch (1 of its steps).
  np.testing.assert_array_equal(metric_values,
                                values(trained.metrics_variables))
  assert len(metric_values) == 4  # loss and accuracy: total, count


def test_weights_only_restore_skips_the_optimizer(trained_dir):
  model_dir, trained = trained_dir
  fresh = tiny_model()  # never trained: no optimizer slots yet
  checkpoint = checkpointing.TrainingCheckpoint(model_dir)
  checkpoint.attach(fresh, weights_only=True)
  assert checkpoint.restore(weights_only=True) == []
  for got, saved in zip(values(fresh.weights), values(trained.weights),
                        strict=True):
    np.testing.assert_array_equal(got, saved)
  assert int(fresh.optimizer.iterations.numpy()) == 0


def test_check_fits_accepts_the_same_model(trained_dir):
  model_dir, _ = trained_dir
  checkpointing.TrainingCheckpoint(model_dir).check_fits(tiny_model())


@pytest.mark.parametrize('model_kwargs, problems', [
    (dict(units=5),
     'sequential.batch_normalization.beta saved as [3], model has [5]; '
     'sequential.batch_normalization.gamma saved as [3], model has [5]; '
     'sequential.batch_normalization.moving_mean saved as [3], model has '
     '[5]; sequential.batch_normalization.moving_variance saved as [3], '
     'model has [5]; sequential.dense.bias saved as [3], model has [5] '
     '(and 1 more)'),
    (dict(batch_norm=False),
     'sequential.batch_normalization.beta not in the model; '
     'sequential.batch_normalization.gamma not in the model; '
     'sequential.batch_normalization.moving_mean not in the model; '
     'sequential.batch_normalization.moving_variance not in the model'),
], ids=['shapes', 'fewer-layers'])
def test_check_fits_names_what_differs(trained_dir, model_kwargs, problems):
  model_dir, _ = trained_dir
  with pytest.raises(ValueError) as error:
    checkpointing.TrainingCheckpoint(model_dir).check_fits(
        tiny_model(**model_kwargs))
  assert str(error.value) == (
      f'Checkpoint {model_dir}/checkpoints/ckpt-4 does not fit this model: '
      f'{problems}. Use the settings it was trained with, or a new '
      '--model_dir.')


def test_check_fits_names_variables_the_checkpoint_lacks(tmp_path):
  writer = checkpointing.TrainingCheckpoint(str(tmp_path))
  writer.attach(tiny_model(batch_norm=False))
  writer.save(checkpointing.Progress(3, step_in_epoch=1))
  with pytest.raises(ValueError, match=(
      'ckpt-1 does not fit this model: '
      'sequential.batch_normalization.beta missing; '
      'sequential.batch_normalization.gamma missing; '
      'sequential.batch_normalization.moving_mean missing; '
      'sequential.batch_normalization.moving_variance missing. Use the '
      'settings it was trained with')):
    checkpointing.TrainingCheckpoint(str(tmp_path)).check_fits(tiny_model())


def test_restore_into_a_model_with_more_variables_is_refused(tmp_path):
  writer = checkpointing.TrainingCheckpoint(str(tmp_path))
  writer.attach(tiny_model(batch_norm=False))
  writer.save(checkpointing.Progress(3, step_in_epoch=1))
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path))
  checkpoint.attach(tiny_model())
  with pytest.raises(ValueError) as error:
    checkpoint.restore()
  message = str(error.value)
  assert message.startswith(
      f'Checkpoint {tmp_path}/checkpoints/ckpt-1 does not fit this model: '
      'Found ')
  assert message.endswith(
      '. Use the settings it was trained with, or a new --model_dir.')


def test_restore_into_other_shapes_names_the_variable(trained_dir):
  model_dir, _ = trained_dir
  other = tiny_model(units=5)
  other.fit(epoch_dataset(), epochs=1, steps_per_epoch=1, verbose=0,
            shuffle=False)
  checkpoint = checkpointing.TrainingCheckpoint(model_dir)
  checkpoint.attach(other)
  # TensorFlow's own error, raised while assigning: `check_fits`, called
  # first by the run, gives the fuller message.
  with pytest.raises(ValueError, match=(
      r'incompatible tensor with shape \(3,\) when attempting to restore '
      r'variable with shape \(5,\)')):
    checkpoint.restore()


@pytest.mark.parametrize('signum, exit_status', [
    (signal.SIGTERM, preemption.EXIT_PREEMPTED),
    (signal.SIGINT, preemption.EXIT_INTERRUPTED)])
def test_watcher_turns_sigterm_and_sigint_into_a_flag(signum, exit_status):
  before = signal.getsignal(signum)
  with preemption.PreemptionWatcher() as watcher:
    assert not watcher.requested
    os.kill(os.getpid(), signum)
    assert watcher.requested
    assert watcher.exit_status == exit_status
    os.kill(os.getpid(), signal.SIGTERM)  # a later SIGTERM changes nothing
    assert watcher.exit_status == exit_status
  assert signal.getsignal(signum) is before


def test_a_second_ctrl_c_stops_at_once():
  with preemption.PreemptionWatcher() as watcher:
    os.kill(os.getpid(), signal.SIGINT)
    assert watcher.requested
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)


# (total steps, every_steps, checkpoints written, final (epoch, step)).
SAVE_CASES = [
    (6, 2, [2, 3, 4, 6], (2, 0)),   # epoch ends at 3 and 6
    (6, 3, [3, 6], (2, 0)),         # epoch ends only: never saved twice
    (4, 2, [2, 3, 4], (1, 1)),      # the run ends inside epoch 1
    (5, 1, [1, 2, 3, 4, 5], (1, 2)),
    (6, 100, [3, 6], (2, 0)),
]


@pytest.mark.parametrize('total_steps, every_steps, numbers, position',
                         SAVE_CASES, ids=[f'T{c[0]}-every{c[1]}'
                                          for c in SAVE_CASES])
def test_callback_saves_every_n_steps_and_at_epoch_ends(
    tmp_path, total_steps, every_steps, numbers, position):
  _, progress, _ = train(str(tmp_path), total_steps, every_steps=every_steps)
  assert saved_numbers(str(tmp_path)) == numbers
  assert (progress.epoch, progress.step_in_epoch) == position
  read = checkpointing.TrainingCheckpoint(str(tmp_path)).read_progress(
      STEPS_PER_EPOCH)
  assert (read.epoch, read.step_in_epoch) == position


def test_callback_keeps_the_best_model_and_checkpoints_its_accuracy(
    tmp_path):
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path))
  progress = checkpoint.read_progress(STEPS_PER_EPOCH)
  history = tiny_model().fit(
      epoch_dataset(), epochs=3, validation_data=epoch_dataset(), verbose=0,
      shuffle=False, callbacks=[run_helpers.run_callback(
          str(tmp_path), checkpoint, progress, total_steps=9)])
  best = max(history.history['val_accuracy'])
  assert checkpoint.read_progress(STEPS_PER_EPOCH).best_accuracy == (
      pytest.approx(best))
  kept = keras.saving.load_model(str(tmp_path / 'best_model.keras'))
  assert kept.evaluate(epoch_dataset(), verbose=0, return_dict=True)[
      'accuracy'] == pytest.approx(best)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_and_stops_then_resume_is_exact(tmp_path, signum):
  expected_dir, resumed_dir = str(tmp_path / 'whole'), str(tmp_path / 'cut')
  whole, _, whole_logs = train(expected_dir, total_steps=6)

  # The signal during epoch 1 (after global step 4): saved at 4, stopped.
  handler = signal.getsignal(signum)
  _, progress, _ = train(resumed_dir, total_steps=6, sigterm_at=4,
                         signum=signum)
  assert progress.preempted
  assert progress.global_step == 4
  assert saved_numbers(resumed_dir) == [2, 3, 4]
  assert signal.getsignal(signum) is handler

  # A new process (here: new objects) resumes at epoch 1, step 1.
  resumed, progress, resumed_logs = train(resumed_dir, total_steps=6)
  assert not progress.preempted
  assert saved_numbers(resumed_dir) == [2, 3, 4, 6]
  for got, expected in zip(all_state(resumed), all_state(whole), strict=True):
    np.testing.assert_array_equal(got, expected)
  # The resumed epoch's running metrics continue from the checkpoint.
  assert resumed_logs == [whole_logs[-1]]


@pytest.mark.xfail(strict=True, reason=(
    'RunCallback attaches in on_train_begin, which Keras 3 calls before it '
    'creates the optimizer slots and compiled metrics of a model compiled '
    'outside a strategy scope (e.g. under TensorFlow\'s default strategy, '
    'which is no scope for Keras; Cluster.connect never gives it): the '
    'checkpoint then lacks the momentum and accuracy variables, and resume '
    'is not exact.'))
def test_callback_saves_the_optimizer_of_a_model_compiled_without_scope(
    tmp_path):
  # Compiled under the default strategy.
  train(str(tmp_path), total_steps=3,
        model=tiny_model(strategy=tf.distribute.get_strategy()))
  reader = tf.train.load_checkpoint(
      str(tmp_path / 'checkpoints' / 'ckpt-3'))
  names = reader.get_variable_to_shape_map()
  optimizer_slots = [n for n in names if n.startswith('optimizer/')]
  metrics = [n for n in names if n.startswith('metrics/accuracy')]
  # iterations, learning_rate and 4 momentum slots; accuracy total, count.
  assert (len(optimizer_slots), len(metrics)) == (6, 2)


# Damaged state, as a preemption in the middle of a save to a bucket can
# leave it: the newest checkpoint without its `.index` (TensorFlow writes
# `ckpt-N.data-*` first and the index last), or the `checkpoint` state file
# cut short.
def _drop_index(model_dir, step):
  os.remove(os.path.join(model_dir, 'checkpoints', f'ckpt-{step}.index'))


def _garble_state_file(model_dir, step):
  del step
  with open(os.path.join(model_dir, 'checkpoints', 'checkpoint'), 'w',
            encoding='utf-8') as f:
    f.write('model_checkpoint_path: "ckpt-')  # cut short


@pytest.mark.parametrize('damage, resumed_from', [(_drop_index, 4),
                                                  (_garble_state_file, 6)])
def test_a_damaged_newest_checkpoint_resumes_from_a_readable_one(
    tmp_path, damage, resumed_from):
  expected_dir, damaged_dir = str(tmp_path / 'whole'), str(tmp_path / 'cut')
  whole, _, _ = train(expected_dir, total_steps=9, keep=3)
  train(damaged_dir, total_steps=6, keep=3)
  assert saved_numbers(damaged_dir) == [3, 4, 6]
  damage(damaged_dir, 6)

  checkpoint = checkpointing.TrainingCheckpoint(damaged_dir, keep=3)
  assert checkpoint.read_progress(STEPS_PER_EPOCH).global_step == (
      resumed_from)
  resumed, progress, _ = train(damaged_dir, total_steps=9, keep=3)
  assert progress.global_step == 9
  for got, expected in zip(all_state(resumed), all_state(whole), strict=True):
    np.testing.assert_array_equal(got, expected)
  assert sorted(os.listdir(os.path.join(damaged_dir, 'checkpoints'))) == [
      'checkpoint'] + [f'ckpt-{step}.{kind}' for step in (6, 8, 9)
                       for kind in ('data-00000-of-00001', 'index')]


def test_intact_checkpoints_stay_until_a_newer_one_is_read_back(tmp_path):
  model_dir = str(tmp_path)
  train(model_dir, total_steps=4, keep=2)
  _drop_index(model_dir, 4)
  checkpoint = checkpointing.TrainingCheckpoint(model_dir, keep=2)
  checkpoint.attach(tiny_model())
  checkpoint.restore()
  assert saved_numbers(model_dir) == [3]  # 4 is unreadable, 3 still kept
  checkpoint.save(checkpointing.Progress(STEPS_PER_EPOCH, epoch=1,
                                         step_in_epoch=1))
  assert saved_numbers(model_dir) == [3, 4]


def test_no_readable_checkpoint_stops_the_run_naming_them(tmp_path):
  model_dir = str(tmp_path)
  train(model_dir, total_steps=3, keep=2)
  for step in (2, 3):
    _drop_index(model_dir, step)
  checkpoint = checkpointing.TrainingCheckpoint(model_dir)
  with pytest.raises(checkpointing.UnreadableCheckpointsError,
                     match=r'No checkpoint in .*checkpoints can be read: '
                           r'ckpt-3 \(.*\); ckpt-2 \(.*\)\. Move that folder'):
    checkpoint.read_progress(STEPS_PER_EPOCH)


def _interrupted_save(model_dir, step):
  """What a save killed while writing ckpt-<step> leaves (TensorFlow's
  sharded save writes into ckpt-<step>_temp/ first)."""
  orphan = os.path.join(model_dir, 'checkpoints', f'ckpt-{step}_temp')
  os.makedirs(orphan)
  with open(os.path.join(orphan, 'part-00000-of-00001.data-00000-of-00001'),
            'wb') as f:
    f.write(bytes(1000))


def test_an_interrupted_first_save_counts_as_no_checkpoint(tmp_path):
  _interrupted_save(str(tmp_path), 1)
  assert checkpointing.TrainingCheckpoint(str(tmp_path)).latest() is None


def test_an_interrupted_save_leaves_no_temporary_folder(tmp_path):
  model_dir = str(tmp_path)
  checkpoint = checkpointing.TrainingCheckpoint(model_dir, keep=2)
  checkpoint.attach(tiny_model())
  checkpoint.save(checkpointing.Progress(STEPS_PER_EPOCH, step_in_epoch=1))
  _interrupted_save(model_dir, 2)
  checkpoint.save(checkpointing.Progress(STEPS_PER_EPOCH, step_in_epoch=2))
  assert sorted(os.listdir(os.path.join(model_dir, 'checkpoints'))) == [
      'checkpoint', 'ckpt-1.data-00000-of-00001', 'ckpt-1.index',
      'ckpt-2.data-00000-of-00001', 'ckpt-2.index']


def test_each_checkpoint_holds_the_run_identity(tmp_path):
  identity = run_identity.RunIdentity(batch_size=4, label_names=('a', 'b'),
                                      seed=3)
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path),
                                                identity=identity)
  checkpoint.attach(tiny_model())
  assert checkpointing.read_identity(str(tmp_path)) is None
  checkpoint.save(checkpointing.Progress(STEPS_PER_EPOCH, step_in_epoch=1))
  assert checkpointing.read_identity(str(tmp_path)) == identity
