"""TensorBoard summaries under `model_dir`.

Writers: `model_dir/train` (running training metrics every N steps as
`loss`, `accuracy`, `top5_accuracy` and `learning_rate`; per epoch as
`epoch_loss`, ...; the operative gin config as text; the hyperparameters),
`model_dir/validation` (`epoch_loss`, `epoch_accuracy`, ... after each
epoch) and `model_dir/eval` (the final evaluation's scalars and confusion
matrix image). Every summary's step is the global training step, so curves
continue where they stopped after a resume.
"""

import os

import keras
import numpy as np
from tensorboard.plugins.hparams import api as hparams_api
import tensorflow as tf

from trainer.training.checkpointing import Progress

TRAIN, VALIDATION, EVAL = 'train', 'validation', 'eval'


def writer(model_dir: str, name: str) -> tf.summary.SummaryWriter:
  return tf.summary.create_file_writer(os.path.join(model_dir, name))


def learning_rate(optimizer) -> float:
  return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class SummaryCallback(keras.callbacks.Callback):
  """Writes training and validation scalars; see the module docstring."""

  def __init__(self, model_dir: str, progress: Progress, every_steps: int):
    super().__init__()
    if every_steps < 1:
      raise ValueError(f'run.summary_every_steps={every_steps} must be at '
                       'least 1.')
    self.progress = progress
    self.every_steps = every_steps
    self.train_writer = writer(model_dir, TRAIN)
    self.validation_writer = writer(model_dir, VALIDATION)

  def on_train_batch_end(self, batch, logs=None):
    step = self.progress.global_step
    if step % self.every_steps:
      return
    with self.train_writer.as_default(step=step):
      for name, value in (logs or {}).items():
        tf.summary.scalar(name, value)
      tf.summary.scalar('learning_rate', learning_rate(self.model.optimizer))

  def on_epoch_end(self, epoch, logs=None):
    if self.model.stop_training:  # preempted inside the epoch
      return
    step = self.progress.global_step
    train = {k: v for k, v in (logs or {}).items() if not k.startswith('val_')}
    validation = {k[len('val_'):]: v for k, v in (logs or {}).items()
                  if k.startswith('val_')}
    for summary_writer, values in ((self.train_writer, train),
                                   (self.validation_writer, validation)):
      with summary_writer.as_default(step=step):
        for name, value in values.items():
          tf.summary.scalar(f'epoch_{name}', value)
      summary_writer.flush()

  def on_train_end(self, logs=None):
    self.train_writer.flush()
    self.validation_writer.flush()


def write_config(model_dir: str, config_text: str, hparams: dict,
                 step: int) -> None:
  """The operative gin config as text, and the run's hyperparameters."""
  train_writer = writer(model_dir, TRAIN)
  with train_writer.as_default(step=step):
    # Markdown: indent by four spaces so TensorBoard shows it verbatim.
    tf.summary.text('operative_config', '\n'.join(
        '    ' + line for line in config_text.splitlines()))
    hparams_api.hparams(hparams)
  train_writer.close()


def write_eval(model_dir: str, metrics: dict, confusion_png: bytes,
               step: int) -> None:
  """The evaluation's scalars and confusion matrix image."""
  eval_writer = writer(model_dir, EVAL)
  with eval_writer.as_default(step=step):
    for name in ('top1', 'top5', 'mean_class_accuracy'):
      tf.summary.scalar(name, metrics[name])
    for label, accuracy in metrics['per_class_accuracy'].items():
      if accuracy is not None:
        tf.summary.scalar(f'per_class/{label}', accuracy)
    image = tf.io.decode_png(confusion_png, channels=3)
    tf.summary.image('confusion_matrix', image[np.newaxis])
  eval_writer.close()
