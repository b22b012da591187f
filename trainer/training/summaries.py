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

from trainer.training import evaluation


TRAIN, VALIDATION, EVAL = 'train', 'validation', 'eval'


def writer(model_dir: str, name: str) -> tf.summary.SummaryWriter:
  return tf.summary.create_file_writer(os.path.join(model_dir, name))


def learning_rate(optimizer) -> float:
  return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class Summaries:
  """The training and validation scalars of a run; see the module docstring.

  The run's callback (`callback.RunCallback`) calls `training_step` after
  each step and `epoch` after each finished epoch, with the global step.
  """

  def __init__(self, model_dir: str, every_steps: int):
    self.every_steps = every_steps
    self.train_writer = writer(model_dir, TRAIN)
    self.validation_writer = writer(model_dir, VALIDATION)

  def training_step(self, step: int, logs: dict[str, float],
                    optimizer) -> None:
    """The step's running metrics and learning rate, every `every_steps`."""
    if step % self.every_steps:
      return
    with self.train_writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar('learning_rate', learning_rate(optimizer))

  def epoch(self, step: int, logs: dict[str, float]) -> None:
    """The epoch's metrics (`epoch_<name>`), training and validation."""
    train = {k: v for k, v in logs.items() if not k.startswith('val_')}
    validation = {k[len('val_'):]: v for k, v in logs.items()
                  if k.startswith('val_')}
    for summary_writer, values in ((self.train_writer, train),
                                   (self.validation_writer, validation)):
      with summary_writer.as_default(step=step):
        for name, value in values.items():
          tf.summary.scalar(f'epoch_{name}', value)
      summary_writer.flush()

  def flush(self) -> None:
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


def write_eval(model_dir: str, metrics: evaluation.EvalMetrics,
               confusion_png: bytes, step: int) -> None:
  """The evaluation's scalars and confusion matrix image."""
  eval_writer = writer(model_dir, EVAL)
  with eval_writer.as_default(step=step):
    for name in ('top1', 'top5', 'mean_class_accuracy'):
      tf.summary.scalar(name, getattr(metrics, name))
    for label, accuracy in metrics.per_class_accuracy.items():
      if accuracy is not None:
        tf.summary.scalar(f'per_class/{label}', accuracy)
    image = tf.io.decode_png(confusion_png, channels=3)
    tf.summary.image('confusion_matrix', image[np.newaxis])
  eval_writer.close()
