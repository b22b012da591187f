"""What a `model_dir` was trained on, so a resume cannot silently change it.

`model_dir/run.json` records a `RunIdentity`: the model id and variant, the
classes, the dataset (labels and training shards, by content), the global
batch size, the shuffle buffer and the seed (these fix the order of the
batches). A later run in the same `model_dir` must match it, or it is
refused before anything is written.
"""

import dataclasses
import json
import os
from typing import Any, Optional

import tensorflow as tf

from trainer import files

RUN_FILE = 'run.json'

# Each field, and the setting to change back when it differs.
_SETTINGS = {
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


@dataclasses.dataclass(frozen=True)
class RunIdentity:
  """What fixes a run's model and its sequence of batches.

  A field is None only in a record written before it existed; it is then
  not compared.
  """
  model_id: Optional[str] = None
  stream: Optional[bool] = None
  label_names: Optional[tuple[str, ...]] = None
  num_classes: Optional[int] = None
  dataset: Optional[str] = None
  batch_size: Optional[int] = None
  shuffle_buffer: Optional[int] = None
  seed: Optional[int] = None

  def to_json(self) -> dict[str, Any]:
    """The fields that are set, as JSON values."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
            if value is not None}

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> 'RunIdentity':
    """The identity a `to_json` record describes (unknown keys ignored)."""
    known = {field.name for field in dataclasses.fields(cls)}
    values = {name: tuple(value) if isinstance(value, list) else value
              for name, value in record.items() if name in known}
    return cls(**values)

  def differences(self, other: 'RunIdentity') -> list[str]:
    """The fields set in both that differ."""
    return [name for name in _SETTINGS
            if None not in (getattr(self, name), getattr(other, name))
            and getattr(self, name) != getattr(other, name)]


def read(model_dir: str) -> Optional[RunIdentity]:
  """The identity in `model_dir/run.json`, or None if there is none.

  Raises:
    RunMismatchError: the file is not valid JSON.
  """
  path = os.path.join(model_dir, RUN_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    try:
      return RunIdentity.from_json(json.load(f))
    except (json.JSONDecodeError, AttributeError, TypeError) as error:
      raise RunMismatchError(
          f'{path} is not valid JSON ({error}); it describes the run in '
          'this --model_dir. Restore it, or use a new --model_dir.') from error


def check_against_checkpoint(model_dir: str, recorded: Optional[RunIdentity],
                             saved: Optional[RunIdentity]
                             ) -> Optional[RunIdentity]:
  """The identity to check a new run against: `run.json`'s (`recorded`),
  else the newest checkpoint's (`saved`), which it must equal.

  Raises:
    RunMismatchError: `run.json` differs from the checkpoint's record.
  """
  if saved is None or recorded == saved:
    return recorded or saved
  if recorded is None:
    return saved
  differences = sorted(set(recorded.differences(saved))
                       | {name for name in _SETTINGS
                          if (getattr(recorded, name) is None)
                          != (getattr(saved, name) is None)})
  raise RunMismatchError(
      f'{os.path.join(model_dir, RUN_FILE)} differs from the run its newest '
      f'checkpoint records (in {", ".join(differences)}); restore the file, '
      'or use a new --model_dir.')


def check(model_dir: str, identity: RunIdentity,
          recorded: Optional[RunIdentity]) -> None:
  """Raises RunMismatchError naming each setting that differs."""
  if recorded is None:
    return
  differences = [
      f'{_SETTINGS[name]}: {_shown(getattr(recorded, name))} before, now '
      f'{_shown(getattr(identity, name))}'
      for name in identity.differences(recorded)]
  if differences:
    raise RunMismatchError(
        f'--model_dir={model_dir} holds a run with other settings; '
        + '; '.join(differences) + '. Change them back to resume, or use a '
        'new --model_dir.')


def _shown(value) -> str:
  return repr(list(value) if isinstance(value, tuple) else value)


def write(model_dir: str, identity: RunIdentity) -> None:
  """Writes `run.json` atomically."""
  files.write_atomically(os.path.join(model_dir, RUN_FILE),
                         json.dumps(identity.to_json(), indent=2,
                                    sort_keys=True))
