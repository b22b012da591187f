"""One run: train with Keras' `fit` under a strategy, resume, evaluate.

`run` is the root gin configurable. Everything in `model_dir`:

- `run.json`: what was trained (model, classes, dataset, batch, seed); a
  later run must match it (`run_identity`).
- `checkpoints/`: the last `keep_checkpoints` checkpoints (`checkpointing`).
- `operative_config.gin`: the gin settings the run used.
- `train/`, `validation/`, `eval/`: TensorBoard summaries (`summaries`).
- `best_model.keras`: the weights with the best validation accuracy so far;
  `final_model.keras`: the model at the end of training.
- `eval/metrics.json`, `eval/confusion_matrix.png` (`evaluation`).

Each epoch is one `fit` call on that epoch's fixed sequence of batches (see
`VideoInputs.train_dataset`), started where the newest checkpoint left off.
Under multi-worker training only the chief writes `model_dir`; the other
workers make the same writes into a temporary directory (`multi_worker`).
"""

import inspect
import math
import os
import random
import uuid
from typing import Optional

from absl import logging
import gin
import keras
import tensorflow as tf

from trainer import files
from trainer.model.losses import SparseCrossentropy
from trainer.training import checkpointing
from trainer.training import evaluation
from trainer.training import factories
from trainer.training import inputs as inputs_lib
from trainer.training import multi_worker
from trainer.training import run_identity
from trainer.training import summaries

MODES = ('train', 'eval', 'train_and_eval')
POLICIES = ('float32', 'mixed_float16', 'mixed_bfloat16')
OPERATIVE_CONFIG = 'operative_config.gin'
BEST_MODEL, FINAL_MODEL = 'best_model.keras', 'final_model.keras'


def compile_model(model: keras.Model, optimizer, num_classes: int,
                  label_smoothing: float = 0.0,
                  jit_compile: bool = False) -> None:
  """Compiles with the run's loss and metrics (in the strategy's scope)."""
  model.compile(
      optimizer=optimizer,
      loss=SparseCrossentropy(num_classes, label_smoothing),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy'),
               # Top-5 (trivially 1 with 5 classes or fewer).
               keras.metrics.SparseTopKCategoricalAccuracy(
                   k=min(5, num_classes), name='top5_accuracy')],
      jit_compile=jit_compile)


def _setting(configurable, name: str):
  """A configurable's argument as gin binds it, else its default."""
  bindings = gin.get_bindings(configurable)
  if name in bindings:
    return bindings[name]
  return inspect.signature(configurable).parameters[name].default


def _check_model_dir(model_dir: str) -> None:
  """Creates `model_dir` if needed and checks that files can be written."""
  probe = os.path.join(model_dir, f'.write-test-{uuid.uuid4().hex}')
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, 'w') as f:
      f.write('')
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as error:
    raise ValueError(f'--model_dir={model_dir} is not writable '
                     f'({type(error).__name__}); choose another --model_dir '
                     'or fix its permissions.') from error


def _scalar_hparams(num_replicas: int, seed: int) -> dict:
  """Scalar gin bindings of the configurables, for TensorBoard's HParams."""
  hparams = {'num_replicas': num_replicas, 'seed': seed}
  for configurable in (factories.build_model, factories.build_optimizer,
                       inputs_lib.build_inputs, run):
    for name, value in gin.get_bindings(configurable).items():
      if isinstance(value, (bool, int, float, str)):
        hparams[f'{configurable.__name__}.{name}'] = value
  return hparams


def _save_keras(model: keras.Model, path: str) -> None:
  """Saves in Keras' format under a temporary name, then renames.

  Raises:
    OSError: naming `path`, when the save fails (e.g. a full disk); the
      temporary file is removed and a previous file at `path` stays.
  """
  try:
    with files.replacing(path, suffix='.keras') as temporary:
      model.save(temporary)
  except (OSError, tf.errors.OpError) as error:
    raise OSError(f'Could not save {path}: {files.reason(error)}. Free '
                  'space there (or fix the cause) and rerun the same command '
                  'to resume.') from error


class BestModelCallback(keras.callbacks.Callback):
  """Keeps the model with the best validation accuracy; before the
  checkpoint callback, so the checkpoint records the best value."""

  def __init__(self, path: str, progress: checkpointing.Progress):
    super().__init__()
    self.path = path
    self.progress = progress

  def on_epoch_end(self, epoch, logs=None):
    accuracy = (logs or {}).get('val_accuracy')
    if self.model.stop_training or accuracy is None:
      return
    if accuracy > self.progress.best_accuracy:
      self.progress.best_accuracy = float(accuracy)
      _save_keras(self.model, self.path)
      logging.info('Validation accuracy %.4f is the best so far; saved %s.',
                   accuracy, self.path)


@gin.configurable(denylist=['model_dir', 'mode', 'strategy'])
def run(model_dir: str,
        mode: str = 'train_and_eval',
        strategy: Optional[tf.distribute.Strategy] = None,
        epochs: int = 10,
        train_steps: Optional[int] = None,
        seed: Optional[int] = None,
        deterministic: bool = False,
        mixed_precision: str = 'float32',
        jit_compile: bool = False,
        label_smoothing: float = 0.0,
        checkpoint_every_steps: int = 100,
        keep_checkpoints: int = 3,
        summary_every_steps: int = 10,
        validate: bool = True,
        verbose: int = 1) -> Optional[dict]:
  """Trains and/or evaluates in `model_dir`, resuming what is there.

  Args:
    model_dir: where everything of the run goes (see the module docstring).
    mode: 'train', 'eval' (the newest checkpoint) or 'train_and_eval'.
    strategy: from `strategies.build_strategy`; the default one if None.
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

  Returns:
    The evaluation metrics if evaluated, else None.

  Raises:
    ValueError: a bad setting, data directory, model_dir or checkpoint.
    checkpointing.Preempted: SIGTERM stopped training after a checkpoint.
  """
  if mode not in MODES:
    raise ValueError(f'--mode={mode!r} is not one of {", ".join(MODES)}.')
  if mixed_precision not in POLICIES:
    raise ValueError(f'run.mixed_precision={mixed_precision!r} is not one of '
                     f'{", ".join(POLICIES)}.')
  for name, value in (('epochs', epochs), ('train_steps', train_steps or 1),
                      ('checkpoint_every_steps', checkpoint_every_steps),
                      ('keep_checkpoints', keep_checkpoints),
                      ('summary_every_steps', summary_every_steps)):
    if value < 1:
      raise ValueError(f'run.{name}={value} must be at least 1.')
  strategy = strategy or tf.distribute.get_strategy()
  inputs = inputs_lib.build_inputs(
      num_replicas=strategy.num_replicas_in_sync,
      num_workers=multi_worker.num_workers(strategy))
  recorded = run_identity.check_against_checkpoint(
      model_dir, run_identity.read(model_dir),
      checkpointing.read_identity(model_dir))
  if seed is None:
    seed = recorded['seed'] if recorded else random.randrange(2**31)
    seed = multi_worker.agree(strategy, seed)  # the chief's draw
  identity = {
      'model_id': _setting(factories.build_model, 'model_id'),
      'stream': _setting(factories.build_model, 'stream'),
      'label_names': list(inputs.label_names),
      'num_classes': inputs.num_classes,
      'dataset': inputs.dataset_fingerprint,
      'batch_size': inputs.batch_size,
      'shuffle_buffer': inputs.shuffle_buffer,
      'seed': seed,
  }
  factories.check_model_id(identity['model_id'])
  run_identity.check(model_dir, identity, recorded)
  if mode == 'eval' and not checkpointing.TrainingCheckpoint(
      model_dir).latest():
    raise ValueError(f'--mode=eval found no checkpoint in {model_dir}; train '
                     'first (--mode=train), or point --model_dir at a run.')

  keras.mixed_precision.set_dtype_policy(mixed_precision)
  keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  steps_per_epoch = inputs.steps_per_epoch
  total_steps = train_steps or epochs * steps_per_epoch
  with strategy.scope():
    model = factories.build_model(num_classes=inputs.num_classes)
    optimizer = factories.build_optimizer(steps_per_epoch=steps_per_epoch,
                                          total_steps=total_steps)
    compile_model(model, optimizer, inputs.num_classes, label_smoothing,
                  jit_compile)
  multi_worker.use_keras_fit(model, strategy)

  with multi_worker.worker_write_dir(model_dir, strategy) as write_dir:
    checkpoint = checkpointing.TrainingCheckpoint(
        model_dir, keep_checkpoints, write_dir, identity=identity)
    checkpoint.check_fits(model)
    _check_model_dir(write_dir)  # the first write
    run_identity.write(write_dir, identity)
    trained = False
    if mode != 'eval':
      trained = _train(model, inputs, strategy, write_dir, checkpoint,
                       seed=seed, total_steps=total_steps,
                       deterministic=deterministic,
                       checkpoint_every_steps=checkpoint_every_steps,
                       summary_every_steps=summary_every_steps,
                       validate=validate, verbose=verbose)
    if not trained:
      checkpoint.attach(model, weights_only=True)
      checkpoint.restore(weights_only=True)
    # (Agreed, as the chief may write it while another worker looks.)
    if mode != 'eval' and multi_worker.agree(strategy, int(
        trained or not tf.io.gfile.exists(os.path.join(model_dir,
                                                       FINAL_MODEL)))):
      final_model = os.path.join(write_dir, FINAL_MODEL)
      _save_keras(model, final_model)  # also when a rerun finds it missing
      logging.info('Saved %s.', final_model)
    if mode == 'train':
      return None
    progress = checkpoint.read_progress(steps_per_epoch)
    return _evaluate(model, inputs, write_dir, progress.global_step)


def _train(model, inputs, strategy, model_dir, checkpoint, *, seed,
           total_steps, deterministic, checkpoint_every_steps,
           summary_every_steps, validate, verbose) -> bool:
  """Trains from the newest checkpoint to `total_steps`; True if it ran.

  `model_dir` is where this process writes (see `run`); the checkpoints are
  read from `checkpoint.directory`.
  """
  steps_per_epoch = inputs.steps_per_epoch
  progress = checkpoint.read_progress(steps_per_epoch)
  if progress.global_step >= total_steps:
    logging.info('%s is trained already (%d of %d steps).',
                 checkpoint.directory, progress.global_step, total_steps)
    return False
  if progress.global_step:
    logging.info('Resuming at epoch %d, step %d of it (global step %d).',
                 progress.epoch + 1, progress.step_in_epoch,
                 progress.global_step)
  config_text = gin.operative_config_str()
  files.write_atomically(os.path.join(model_dir, OPERATIVE_CONFIG),
                         config_text)
  summaries.write_config(model_dir, config_text,
                         _scalar_hparams(strategy.num_replicas_in_sync, seed),
                         progress.global_step)
  num_epochs = math.ceil(total_steps / steps_per_epoch)
  validation = inputs.eval_dataset(eval_clips=1) if validate else None
  watcher = checkpointing.PreemptionWatcher()
  callbacks = [
      BestModelCallback(os.path.join(model_dir, BEST_MODEL), progress),
      checkpointing.CheckpointCallback(checkpoint, progress,
                                       checkpoint_every_steps, watcher,
                                       total_steps),
      summaries.SummaryCallback(model_dir, progress, summary_every_steps),
  ]
  with watcher:
    while progress.global_step < total_steps:
      epoch = progress.epoch
      steps = (min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
               - progress.step_in_epoch)
      if steps <= 0:  # stopped after the epoch's last step, before its end
        progress.epoch, progress.step_in_epoch = epoch + 1, 0
        continue
      dataset = inputs.train_dataset(
          strategy, seed=seed, epoch=epoch,
          skip_steps=progress.step_in_epoch, deterministic=deterministic)
      callback_list = keras.callbacks.CallbackList(
          callbacks, add_history=True, add_progbar=verbose != 0,
          verbose=verbose, epochs=num_epochs, steps=steps, model=model)
      start = progress.global_step
      model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch,
                steps_per_epoch=steps, validation_data=validation,
                callbacks=callback_list, verbose=verbose, shuffle=False)
      if progress.preempted:
        raise checkpointing.Preempted(
            f'Stopped by {watcher.signal_name or "SIGTERM"} at global step '
            f'{progress.global_step} (checkpoint saved); rerun the same '
            'command to resume.', watcher.exit_status)
      if progress.global_step == start:
        raise ValueError(
            f'Epoch {epoch + 1} yielded no training batch; the split '
            f'{inputs.train_split!r} may be shorter for some input pipeline '
            'than the manifest says. Prepare the data again.')
  logging.info('Trained %d steps; weights fingerprint %s (trainable weights '
               '%s).', total_steps, multi_worker.weights_fingerprint(model),
               multi_worker.weights_fingerprint(model, trainable_only=True))
  return True


def _evaluate(model, inputs, model_dir: str, step: int) -> dict:
  """Evaluates the eval split; writes `eval/` files and summaries."""
  probabilities, labels = evaluation.predict_clips(
      model, inputs.eval_dataset(), eval_clips=inputs.eval_clips)
  metrics = evaluation.compute_metrics(probabilities, labels,
                                       list(inputs.label_names))
  eval_dir = os.path.join(model_dir, summaries.EVAL)
  confusion_png = evaluation.write_eval_outputs(metrics, eval_dir)
  summaries.write_eval(model_dir, metrics, confusion_png, step)
  logging.info('Evaluation of %d clips of split %r: top-1 %.4f, top-5 %.4f, '
               'mean class accuracy %.4f; wrote %s.', metrics['num_clips'],
               inputs.eval_split, metrics['top1'], metrics['top5'],
               metrics['mean_class_accuracy'], eval_dir)
  return metrics
