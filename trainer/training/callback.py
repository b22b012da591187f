"""The one Keras callback of a run: counts, saves, summarizes, stops.

Its steps happen in this order:

At the end of each training step:
  1. count the step in `progress`;
  2. write the training summaries (every `summary_every_steps` steps);
  3. if SIGTERM or Ctrl-C reached any worker (asked every step on one
     machine, every `preemption_poll_steps` steps across workers): save a
     checkpoint and stop;
  4. else save a checkpoint every `checkpoint_every_steps` steps, except at an
     epoch's last step, which is saved at the epoch's end, after validation,
     under the same number (saving it twice would rewrite a live
     checkpoint).

At the end of each validation step: stop validating if asked to stop (what
it would find is thrown away: the epoch is not finished or is saved).

At the end of each epoch (after validation):
  1. keep the model if its validation accuracy is the best so far
     (`best_model.keras`), so that the checkpoint records the best value;
  2. move `progress` to the next epoch (unless `run.train_steps` ended the
     run inside this one);
  3. save a checkpoint;
  4. write the epoch's summaries;
  5. stop if asked to.

At the start of training it restores the newest checkpoint (model,
optimizer, metrics, position); at the start of a resumed epoch it puts back
the epoch's running metrics, which Keras has just reset.
"""

import dataclasses

from absl import logging
import keras

from trainer import files
from trainer.training import checkpointing
from trainer.training import preemption
from trainer.training import summaries as summaries_lib
from trainer.training.cluster import Cluster


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the callback acts, in steps."""
  total_steps: int
  checkpoint_every_steps: int
  preemption_poll_steps: int


class RunCallback(keras.callbacks.Callback):
  """See the module docstring.

  Attributes:
    progress: where the run stands; read it after `fit`.
  """

  def __init__(self, checkpoint: checkpointing.TrainingCheckpoint,
               progress: checkpointing.Progress, *,
               summaries: summaries_lib.Summaries,
               watcher: preemption.PreemptionWatcher, cluster: Cluster,
               schedule: Schedule, best_model_path: str):
    super().__init__()
    self.checkpoint = checkpoint
    self.progress = progress
    self.summaries = summaries
    self.watcher = watcher
    self.cluster = cluster
    self.schedule = schedule
    self.best_model_path = best_model_path
    self._attached = False
    self._metric_values = []
    self._test_steps = 0

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
    progress = self.progress
    progress.step_in_epoch += 1
    step = progress.global_step
    self.summaries.training_step(step, logs or {}, self.model.optimizer)
    if self._stop_requested(step):
      self._stop()
    elif (step % self.schedule.checkpoint_every_steps == 0
          and not self._ends_epoch()):
      self.checkpoint.save(progress)

  def on_test_begin(self, logs=None):
    self._test_steps = 0

  def on_test_batch_end(self, batch, logs=None):
    self._test_steps += 1
    if self._stop_requested(self._test_steps):
      self.model.stop_evaluating = True

  def on_epoch_end(self, epoch, logs=None):
    if self.model.stop_training:
      return
    logs = logs or {}
    self._keep_if_best(logs.get('val_accuracy'))
    if self.progress.step_in_epoch >= self.progress.steps_per_epoch:
      self.progress.epoch += 1
      self.progress.step_in_epoch = 0
    self.checkpoint.save(self.progress)
    self.summaries.epoch(self.progress.global_step, logs)
    if self._stop_requested(0):
      self._stop()

  def on_train_end(self, logs=None):
    self.summaries.flush()

  def _ends_epoch(self) -> bool:
    return (self.progress.step_in_epoch >= self.progress.steps_per_epoch
            or self.progress.global_step >= self.schedule.total_steps)

  def _keep_if_best(self, accuracy) -> None:
    if accuracy is None or accuracy <= self.progress.best_accuracy:
      return
    self.progress.best_accuracy = float(accuracy)
    files.save_model(self.model, self.best_model_path)
    logging.info('Validation accuracy %.4f is the best so far; saved %s.',
                 accuracy, self.best_model_path)

  def _stop_requested(self, step: int) -> bool:
    """Whether any worker got SIGTERM or SIGINT, asked at `step` (under
    several workers all of them ask at the same steps, and all stop)."""
    if not self.cluster.polls_at(step, self.schedule.preemption_poll_steps):
      return False
    return self.cluster.any_worker(self.watcher.requested)

  def _stop(self) -> None:
    if self.checkpoint.last_saved_step != self.progress.global_step:
      self.checkpoint.save(self.progress)
    self.progress.preempted = True
    self.model.stop_training = True

