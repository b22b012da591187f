"""One run: `run(config, cluster, model_dir)` trains, resumes, evaluates.

Everything goes in `model_dir`:

- `run.json`: what was trained (model, classes, dataset, batch, seed); a
  later run must match it (`run_identity`).
- `sampling.json`: how the run's clips came from its videos, which
  inference repeats (`trainer.data.sampling.ClipSampling`).
- `checkpoints/`: the last `run.keep_checkpoints` checkpoints
  (`checkpointing`).
- `operative_config.gin`: the settings the run used.
- `train/`, `validation/`, `eval/`: TensorBoard summaries (`summaries`).
- `best_model.keras`: the weights with the best validation accuracy so far;
  `final_model.keras`: the model at the end of training.
- `eval/metrics.json`, `eval/confusion_matrix.png` (`evaluation`).

Under multi-worker training only the chief writes `model_dir`; the other
workers make the same writes into a temporary directory (`Cluster`).
"""

import os
import random
from typing import Optional
import uuid

import tensorflow as tf

from trainer import files
from trainer.data import sampling
from trainer.training import checkpointing
from trainer.training import evaluation
from trainer.training import inputs as inputs_lib
from trainer.training import run_identity
from trainer.training.cluster import Cluster
from trainer.training.config import ExperimentConfig
from trainer.training.trainer import Trainer
from trainer.training.trainer import process_settings

MODES = ('train', 'eval', 'train_and_eval')


def run(config: ExperimentConfig, cluster: Cluster, model_dir: str,
        mode: str = 'train_and_eval', config_text: Optional[str] = None
        ) -> Optional[evaluation.EvalMetrics]:
  """Trains and/or evaluates in `model_dir`, resuming what is there.

  Args:
    config: the experiment.
    cluster: where it runs (`Cluster.connect()`: this machine's devices).
    model_dir: where everything of the run goes (see the module docstring).
    mode: 'train', 'eval' (the newest checkpoint) or 'train_and_eval'.
    config_text: the settings as the user wrote them (the operative gin
      config), kept in `model_dir` and TensorBoard; `config.describe()`
      if None.

  Returns:
    The evaluation metrics if evaluated, else None.

  Raises:
    ValueError: a bad setting, data directory, model_dir or checkpoint.
    preemption.Preempted: SIGTERM stopped training after a checkpoint.
  """
  if mode not in MODES:
    raise ValueError(f'--mode={mode!r} is not one of {", ".join(MODES)}.')
  inputs = inputs_lib.VideoInputs.read(config.inputs, cluster)
  identity = _identity(config, inputs, cluster, model_dir)
  if mode == 'eval' and not checkpointing.TrainingCheckpoint(
      model_dir).latest():
    raise ValueError(f'--mode=eval found no checkpoint in {model_dir}; train '
                     'first (--mode=train), or point --model_dir at a run.')
  with process_settings(config.run, identity.seed), cluster.write_dir(
      model_dir) as write_dir:
    trainer = Trainer(config, cluster, inputs, model_dir, write_dir, identity)
    _check_model_dir(write_dir)  # the first write
    run_identity.write(write_dir, identity)
    files.write_atomically(
        os.path.join(write_dir, sampling.SAMPLING_FILE),
        files.json_text(inputs.clip_sampling.to_json()))
    trained = mode != 'eval' and trainer.train(config_text
                                               or config.describe())
    if not trained:
      trainer.restore_weights()
    if mode != 'eval':
      trainer.save_final(trained)
    return trainer.evaluate() if mode != 'train' else None


def _identity(config: ExperimentConfig, inputs: inputs_lib.VideoInputs,
              cluster: Cluster, model_dir: str) -> run_identity.RunIdentity:
  """This run's identity, checked against what `model_dir` records.

  Without `run.seed` the seed is the recorded one, else the chief's draw.
  """
  recorded = run_identity.check_against_checkpoint(
      model_dir, run_identity.read(model_dir),
      checkpointing.read_identity(model_dir))
  seed = config.run.seed
  if seed is None:
    seed = recorded.seed if recorded and recorded.seed is not None else (
        random.randrange(2**31))
    seed = cluster.agree(seed)
  identity = run_identity.RunIdentity(
      model_id=config.model.model_id, stream=config.model.stream,
      label_names=inputs.label_names, num_classes=inputs.num_classes,
      dataset=inputs.dataset_fingerprint, batch_size=inputs.batch_size,
      shuffle_buffer=config.inputs.shuffle_buffer, seed=seed)
  run_identity.check(model_dir, identity, recorded)
  return identity


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
