"""TensorBoard summaries: real event files under tmp_path, read back."""

import glob
import math
import os

import keras
import numpy as np
import pytest
from tensorboard.plugins.hparams import plugin_data_pb2
import tensorflow as tf

from tests.training import run_helpers
from trainer.training import checkpointing
from trainer.training import evaluation
from trainer.training import summaries

STEPS_PER_EPOCH = 3
FEATURES = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(6, 4)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def read_events(directory, metadata=False
                ) -> list[tuple[int, str, str, object]]:
  """(step, tag, plugin, value) of every summary in `directory`'s files.

  With `metadata`, the plugin's content (bytes) in place of the value.
  """
  found = []
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data.plugin_name
        if metadata:
          found.append((event.step, value.tag, plugin,
                        value.metadata.plugin_data.content))
          continue
        array = tf.make_ndarray(value.tensor)
        found.append((event.step, value.tag, plugin,
                      array.item() if array.ndim == 0 else array))
  return found


def scalars(directory) -> dict[tuple[int, str], float]:
  return {(step, tag): value for step, tag, plugin, value
          in read_events(directory) if plugin == 'scalars'}


def _tiny_model(learning_rate=0.1) -> keras.Model:
  """A dense classifier of 4 features into 3 classes, compiled as a run is.

  Compiled in a strategy's scope, as `training.loop` does, so Keras builds
  the optimizer and metrics before `on_train_begin`.
  """
  with tf.distribute.OneDeviceStrategy('/cpu:0').scope():
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(
            3, kernel_initializer=keras.initializers.RandomNormal(seed=3))])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
  return model


class _BatchLogs(keras.callbacks.Callback):
  """Keeps the logs Keras passes at each batch's end, by global step."""

  def __init__(self, progress):
    super().__init__()
    self.progress = progress
    self.by_step = {}

  def on_train_batch_end(self, batch, logs=None):
    self.by_step[self.progress.global_step] = dict(logs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Two epochs of 3 steps, summaries every 2 steps, with validation."""
  model_dir = str(tmp_path_factory.mktemp('run'))
  progress = checkpointing.Progress(STEPS_PER_EPOCH)
  model = _tiny_model()
  checkpoint = checkpointing.TrainingCheckpoint(model_dir, keep=1)
  batch_logs = _BatchLogs(progress)
  # The run's callback counts the steps and writes the summaries.
  callbacks = [
      run_helpers.run_callback(model_dir, checkpoint, progress, total_steps=6,
                               summary_every_steps=2),
      batch_logs,
  ]
  dataset = tf.data.Dataset.from_tensor_slices((FEATURES, LABELS)).batch(2)
  history = model.fit(dataset, epochs=2, validation_data=dataset,
                      callbacks=callbacks, verbose=0, shuffle=False)
  return model_dir, batch_logs.by_step, history.history


def test_writers_use_the_three_directories(trained):
  model_dir, _, _ = trained
  assert sorted(os.listdir(model_dir)) == [
      'best_model.keras', checkpointing.CHECKPOINT_DIR, summaries.TRAIN,
      summaries.VALIDATION]


def test_training_scalars_every_n_steps(trained):
  model_dir, batch_logs, _ = trained
  got = {key: value for key, value in scalars(
      os.path.join(model_dir, summaries.TRAIN)).items()
         if not key[1].startswith('epoch_')}
  expected = {}
  for step in (2, 4, 6):
    expected[step, 'loss'] = batch_logs[step]['loss']
    expected[step, 'accuracy'] = batch_logs[step]['accuracy']
    expected[step, 'learning_rate'] = 0.1
  assert got == pytest.approx(expected)


def test_epoch_scalars_at_each_epochs_last_step(trained):
  model_dir, _, history = trained
  train = {key: value for key, value in scalars(
      os.path.join(model_dir, summaries.TRAIN)).items()
           if key[1].startswith('epoch_')}
  validation = scalars(os.path.join(model_dir, summaries.VALIDATION))
  assert train == pytest.approx({
      (3, 'epoch_loss'): history['loss'][0],
      (3, 'epoch_accuracy'): history['accuracy'][0],
      (6, 'epoch_loss'): history['loss'][1],
      (6, 'epoch_accuracy'): history['accuracy'][1]})
  assert validation == pytest.approx({
      (3, 'epoch_loss'): history['val_loss'][0],
      (3, 'epoch_accuracy'): history['val_accuracy'][0],
      (6, 'epoch_loss'): history['val_loss'][1],
      (6, 'epoch_accuracy'): history['val_accuracy'][1]})


def test_training_progresses_in_the_summaries(trained):
  # The loss goes down over these six steps of the same three batches.
  model_dir, _, _ = trained
  train = scalars(os.path.join(model_dir, summaries.TRAIN))
  assert train[6, 'epoch_loss'] < train[3, 'epoch_loss']


def test_summary_steps_continue_from_the_progress(tmp_path):
  # A resumed run: epoch 4 of 10 steps each, 5 of its steps done.
  progress = checkpointing.Progress(10, epoch=4, step_in_epoch=4)
  checkpoint = checkpointing.TrainingCheckpoint(str(tmp_path / 'run'))
  callback = run_helpers.run_callback(str(tmp_path), checkpoint, progress,
                                      total_steps=100, summary_every_steps=5)
  model = _tiny_model(learning_rate=0.25)
  callback.set_model(model)
  checkpoint.attach(model)
  callback.on_train_batch_end(0, {'loss': 1.5, 'accuracy': 0.5})  # step 45
  callback.on_train_batch_end(1, {'loss': 9.0})  # 46: not a multiple of 5
  progress.step_in_epoch = 10
  callback.on_epoch_end(4, {'loss': 1.25, 'val_loss': 2.5,
                            'val_top5_accuracy': 1.0})
  callback.on_train_end()
  assert scalars(tmp_path / summaries.TRAIN) == pytest.approx({
      (45, 'loss'): 1.5, (45, 'accuracy'): 0.5, (45, 'learning_rate'): 0.25,
      (50, 'epoch_loss'): 1.25})
  assert scalars(tmp_path / summaries.VALIDATION) == pytest.approx({
      (50, 'epoch_loss'): 2.5, (50, 'epoch_top5_accuracy'): 1.0})


def test_preempted_epoch_writes_no_epoch_summaries(tmp_path):
  progress = checkpointing.Progress(10, epoch=1, step_in_epoch=3)
  callback = run_helpers.run_callback(
      str(tmp_path), checkpointing.TrainingCheckpoint(str(tmp_path / 'run')),
      progress, total_steps=100, summary_every_steps=1)
  model = _tiny_model()
  callback.set_model(model)
  model.stop_training = True
  callback.on_epoch_end(1, {'loss': 1.0, 'val_loss': 2.0})
  callback.on_train_end()
  assert not read_events(tmp_path / summaries.TRAIN)
  assert not read_events(tmp_path / summaries.VALIDATION)


@pytest.mark.parametrize('iteration, rate', [
    (0, 0.0), (1, 0.05), (2, 0.1), (6, 0.05), (10, 0.0)])
def test_learning_rate_follows_the_schedule(iteration, rate):
  schedule = keras.optimizers.schedules.CosineDecay(
      0.0, decay_steps=8, warmup_target=0.1, warmup_steps=2)
  optimizer = keras.optimizers.SGD(schedule)
  optimizer.iterations.assign(iteration)
  assert summaries.learning_rate(optimizer) == pytest.approx(rate, abs=1e-7)
  assert isinstance(summaries.learning_rate(optimizer), float)


def test_write_config_writes_the_text_and_hparams(tmp_path):
  config = "build_model.model_id = 'a0'\nrun.epochs = 3"
  hparams = {'seed': 7, 'build_model.model_id': 'a0',
             'build_optimizer.learning_rate': 0.01, 'build_model.stream': True}
  summaries.write_config(str(tmp_path), config, hparams, step=12)
  events = read_events(tmp_path / summaries.TRAIN)
  texts = [(step, value) for step, tag, plugin, value in events
           if plugin == 'text']
  assert texts == [(12, b"    build_model.model_id = 'a0'\n    run.epochs = 3")]
  contents = [content for _, _, plugin, content in read_events(
      tmp_path / summaries.TRAIN, metadata=True) if plugin == 'hparams']
  assert len(contents) == 1
  session = plugin_data_pb2.HParamsPluginData.FromString(
      contents[0]).session_start_info
  written = {}
  for name, value in session.hparams.items():
    written[name] = getattr(value, value.WhichOneof('kind'))
  assert written == {'seed': 7.0, 'build_model.model_id': 'a0',
                     'build_optimizer.learning_rate': 0.01,
                     'build_model.stream': True}


def test_write_eval_writes_scalars_and_the_confusion_image(tmp_path):
  image = np.zeros((5, 7, 3), np.uint8)
  image[1, 2] = (255, 0, 0)
  png = tf.io.encode_png(image).numpy()
  metrics = evaluation.EvalMetrics(
      top1=0.5, top5=1.0, mean_class_accuracy=0.25, num_clips=6,
      per_class_accuracy={'Apply Eye Makeup': 0.75, 'jump': None, 'run': 0.0},
      confusion_matrix=[[3, 1, 0], [0, 0, 0], [1, 0, 0]])
  summaries.write_eval(str(tmp_path), metrics, png, step=30)
  events = read_events(tmp_path / summaries.EVAL)
  assert scalars(tmp_path / summaries.EVAL) == pytest.approx({
      (30, 'top1'): 0.5, (30, 'top5'): 1.0, (30, 'mean_class_accuracy'): 0.25,
      (30, 'per_class/Apply Eye Makeup'): 0.75, (30, 'per_class/run'): 0.0})
  images = [(step, value) for step, tag, plugin, value in events
            if tag == 'confusion_matrix']
  assert len(images) == 1
  step, (width, height, encoded) = images[0]
  assert (step, width, height) == (30, b'7', b'5')
  np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(), image)


def test_hparams_and_text_leave_train_scalars_alone(tmp_path):
  # write_config and the callback share `train/`: both files are read back.
  summaries.write_config(str(tmp_path), 'a = 1', {'seed': 1}, step=0)
  train = summaries.Summaries(str(tmp_path), every_steps=2)
  train.training_step(2, {'loss': math.pi}, _tiny_model().optimizer)
  train.flush()
  assert scalars(tmp_path / summaries.TRAIN) == pytest.approx({
      (2, 'loss'): math.pi, (2, 'learning_rate'): 0.1})
