"""The `Trainer`: one model, its optimizer, checkpoint and callback.

`loop.run` makes one per run, inside the process settings of the run
(`process_settings`), and calls `train`, `restore_weights`, `save_final`
and `evaluate`. Each epoch is one `fit` call on that epoch's fixed sequence
of batches (`VideoInputs.train_dataset`), started where the newest
checkpoint left off; the one callback (`callback.RunCallback`) counts steps,
saves checkpoints and summaries, keeps the best model and stops on SIGTERM.
"""

import contextlib
import math
import os
import hashlib
from typing import Iterator, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from trainer import files
from trainer.training import callback as callback_lib
from trainer.training import checkpointing
from trainer.training import evaluation
from trainer.training import factories
from trainer.training import inputs as inputs_lib
from trainer.training import preemption
from trainer.training import run_identity
from trainer.training import summaries
from trainer.training.cluster import Cluster
from trainer.training.config import ExperimentConfig
from trainer.training.config import RunConfig

OPERATIVE_CONFIG = 'operative_config.gin'
BEST_MODEL, FINAL_MODEL = 'best_model.keras', 'final_model.keras'


@contextlib.contextmanager
def process_settings(run: RunConfig, seed: int) -> Iterator[None]:
  """The run's dtype policy, seeds and op determinism; the policy is put
  back on exit. The seeds stay drawn, and op determinism stays on once
  turned on (TensorFlow has no public way to turn it off)."""
  policy = keras.mixed_precision.dtype_policy()
  keras.mixed_precision.set_dtype_policy(run.mixed_precision)
  keras.utils.set_random_seed(seed)
  if run.deterministic:
    tf.config.experimental.enable_op_determinism()
  try:
    yield
  finally:
    keras.mixed_precision.set_dtype_policy(policy)


def weights_fingerprint(weights) -> str:
  """A hash of this process's copy of `weights`.

  Across workers the trainable weights are equal; BatchNorm's moving
  statistics are too with synchronized BatchNorm, else each worker keeps its
  own.
  """
  digest = hashlib.sha256()
  for weight in weights:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(
        weight.value)).tobytes())
  return digest.hexdigest()[:16]


class Trainer:
  """Trains, restores and evaluates one model in `model_dir`.

  Reads checkpoints from `model_dir` and writes into `write_dir`
  (`Cluster.write_dir`: `model_dir` on the chief).
  """

  def __init__(self, config: ExperimentConfig, cluster: Cluster,
               inputs: inputs_lib.VideoInputs, model_dir: str,
               write_dir: str, identity: run_identity.RunIdentity):
    self.config = config
    self.cluster = cluster
    self.inputs = inputs
    self.model_dir = model_dir
    self.write_dir = write_dir
    self.seed = identity.seed
    run = config.run
    self.total_steps = run.train_steps or run.epochs * inputs.steps_per_epoch
    with cluster.strategy.scope():
      self.model = factories.build_model(config.model, inputs.num_classes)
      optimizer = factories.build_optimizer(
          config.optimizer, inputs.steps_per_epoch, self.total_steps)
      factories.compile_model(self.model, optimizer, inputs.num_classes,
                              run.label_smoothing, run.jit_compile)
    cluster.prepare_model(self.model)
    self.checkpoint = checkpointing.TrainingCheckpoint(
        model_dir, run.keep_checkpoints, write_dir, identity=identity)
    self.checkpoint.check_fits(self.model)

  def train(self, config_text: str) -> bool:
    """Trains from the newest checkpoint to the last step; True if it ran.

    Raises:
      preemption.Preempted: SIGTERM or SIGINT stopped it after a checkpoint.
    """
    progress = self.checkpoint.read_progress(self.inputs.steps_per_epoch)
    if progress.global_step >= self.total_steps:
      logging.info('%s is trained already (%d of %d steps).',
                   self.checkpoint.directory, progress.global_step,
                   self.total_steps)
      return False
    if progress.global_step:
      logging.info('Resuming at epoch %d, step %d of it (global step %d).',
                   progress.epoch + 1, progress.step_in_epoch,
                   progress.global_step)
    self._write_config(config_text, progress.global_step)
    watcher = preemption.PreemptionWatcher()
    run = self.config.run
    callback = callback_lib.RunCallback(
        self.checkpoint, progress,
        summaries=summaries.Summaries(self.write_dir, run.summary_every_steps),
        watcher=watcher, cluster=self.cluster,
        schedule=callback_lib.Schedule(self.total_steps,
                                       run.checkpoint_every_steps,
                                       run.preemption_poll_steps),
        best_model_path=os.path.join(self.write_dir, BEST_MODEL))
    validation = (self.inputs.eval_dataset(clips=1) if run.validate
                  else None)
    with watcher:
      while progress.global_step < self.total_steps:
        self._fit_epoch(callback, progress, validation)
        if progress.preempted:
          raise preemption.Preempted(
              f'Stopped by {watcher.signal_name or "SIGTERM"} at global step '
              f'{progress.global_step} (checkpoint saved); rerun the same '
              'command to resume.', watcher.exit_status)
    logging.info('Trained %d steps; weights fingerprint %s (trainable weights '
                 '%s).', self.total_steps,
                 weights_fingerprint(self.model.weights),
                 weights_fingerprint(self.model.trainable_weights))
    return True

  def _write_config(self, config_text: str, step: int) -> None:
    files.write_atomically(os.path.join(self.write_dir, OPERATIVE_CONFIG),
                           config_text)
    hparams = {'num_replicas': self.cluster.num_replicas, 'seed': self.seed,
               **self.config.hparams()}
    summaries.write_config(self.write_dir, config_text, hparams, step)

  def _fit_epoch(self, callback: callback_lib.RunCallback,
                 progress: checkpointing.Progress,
                 validation: Optional[tf.data.Dataset]) -> None:
    """Fits the rest of the current epoch (or moves past a finished one)."""
    steps_per_epoch = self.inputs.steps_per_epoch
    epoch = progress.epoch
    steps = (min(steps_per_epoch, self.total_steps - epoch * steps_per_epoch)
             - progress.step_in_epoch)
    if steps <= 0:  # stopped after the epoch's last step, before its end
      progress.epoch, progress.step_in_epoch = epoch + 1, 0
      return
    run = self.config.run
    dataset = self.inputs.train_dataset(
        self.cluster.strategy, seed=self.seed, epoch=epoch,
        skip_steps=progress.step_in_epoch, deterministic=run.deterministic)
    callbacks = keras.callbacks.CallbackList(
        [callback], add_history=True, add_progbar=run.verbose != 0,
        verbose=run.verbose, model=self.model, steps=steps,
        epochs=math.ceil(self.total_steps / steps_per_epoch))
    start = progress.global_step
    self.model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch,
                   steps_per_epoch=steps, validation_data=validation,
                   callbacks=callbacks, verbose=run.verbose, shuffle=False)
    if progress.global_step == start and not progress.preempted:
      raise ValueError(
          f'Epoch {epoch + 1} yielded no training batch; the split '
          f'{self.inputs.config.train_split!r} may be shorter for some input '
          'pipeline than the manifest says. Prepare the data again.')

  def restore_weights(self) -> None:
    """Loads the newest checkpoint's weights (not the optimizer's)."""
    self.checkpoint.attach(self.model, weights_only=True)
    self.checkpoint.restore(weights_only=True)

  def save_final(self, trained: bool) -> None:
    """Saves `final_model.keras` after training, or when a rerun finds it
    missing (agreed across workers: the chief may write it meanwhile)."""
    missing = not tf.io.gfile.exists(os.path.join(self.model_dir,
                                                  FINAL_MODEL))
    if self.cluster.agree(int(trained or missing)):
      path = os.path.join(self.write_dir, FINAL_MODEL)
      files.save_model(self.model, path)
      logging.info('Saved %s.', path)

  def evaluate(self) -> evaluation.EvalMetrics:
    """Evaluates the eval split; writes `eval/` files and summaries."""
    inputs = self.inputs
    probabilities, labels = evaluation.predict_clips(
        self.model, inputs.eval_dataset(), eval_clips=inputs.config.eval_clips,
        cluster=self.cluster)
    metrics = evaluation.compute_metrics(probabilities, labels,
                                         list(inputs.label_names))
    eval_dir = os.path.join(self.write_dir, summaries.EVAL)
    confusion_png = evaluation.write_eval_outputs(metrics, eval_dir)
    step = self.checkpoint.read_progress(inputs.steps_per_epoch).global_step
    summaries.write_eval(self.write_dir, metrics, confusion_png, step)
    logging.info('Evaluation of %d clips of split %r: top-1 %.4f, top-5 %.4f, '
                 'mean class accuracy %.4f; wrote %s.', metrics.num_clips,
                 inputs.config.eval_split, metrics.top1, metrics.top5,
                 metrics.mean_class_accuracy, eval_dir)
    return metrics

