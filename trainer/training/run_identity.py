"""What a `model_dir` was trained on, so a resume cannot silently change it.

`model_dir/run.json` records the model id and variant, the classes, the
dataset (labels and training shards, by content), the global batch size,
the shuffle buffer and the seed (these fix the order of the batches). A
later run in the same `model_dir` must match it, or it is refused before
anything is written.
"""

import json
import os
from typing import Optional

import tensorflow as tf

from trainer import files

RUN_FILE = 'run.json'

# Each key, and the setting to change back when it differs.
_BINDINGS = {
    'model_id': 'build_model.model_id',
    'stream': 'build_model.stream',
    'label_names': 'the classes of build_inputs.data_dir',
    'num_classes': 'build_inputs.data_dir (its number of classes)',
    'dataset': 'build_inputs.data_dir and build_inputs.train_split',
    'batch_size': 'build_inputs.batch_size (the global batch)',
    'shuffle_buffer': 'build_inputs.shuffle_buffer',
    'seed': 'run.seed',
}


class RunMismatchError(ValueError):
  """`model_dir` holds a run with other settings."""


def read(model_dir: str) -> Optional[dict]:
  path = os.path.join(model_dir, RUN_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as error:
      raise RunMismatchError(
          f'{path} is not valid JSON ({error}); it describes the run in '
          'this --model_dir. Restore it, or use a new --model_dir.') from error


def check_against_checkpoint(model_dir: str, recorded: Optional[dict],
                             saved: Optional[dict]) -> Optional[dict]:
  """The identity to check a new run against: `run.json`'s (`recorded`),
  else the newest checkpoint's (`saved`), which it must equal.

  Raises:
    RunMismatchError: `run.json` differs from the checkpoint's record.
  """
  if saved is None or recorded == saved:
    return recorded or saved
  if recorded is None:
    return saved
  differences = sorted(key for key in set(recorded) | set(saved)
                       if recorded.get(key) != saved.get(key))
  raise RunMismatchError(
      f'{os.path.join(model_dir, RUN_FILE)} differs from the run its newest '
      f'checkpoint records (in {", ".join(differences)}); restore the file, '
      'or use a new --model_dir.')


def check(model_dir: str, identity: dict, recorded: Optional[dict]) -> None:
  """Raises RunMismatchError naming each setting that differs."""
  if recorded is None:
    return
  differences = [
      f'{_BINDINGS.get(key, key)}: {recorded.get(key)!r} before, now '
      f'{value!r}' for key, value in identity.items()
      if key in recorded and recorded[key] != value]
  if differences:
    raise RunMismatchError(
        f'--model_dir={model_dir} holds a run with other settings; '
        + '; '.join(differences) + '. Change them back to resume, or use a '
        'new --model_dir.')


def write(model_dir: str, identity: dict) -> None:
  """Writes `run.json` atomically."""
  files.write_atomically(os.path.join(model_dir, RUN_FILE),
                         json.dumps(identity, indent=2, sort_keys=True))
