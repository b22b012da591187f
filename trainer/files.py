"""Files written whole or not at all, their hashes, and the cache folder.

Preparation, the model's checkpoint sources and the trainer all write
through here. A file is written under a temporary name beside it
(`temporary_name`) and renamed over it only once complete, so a reader never
sees part of one and an interrupted write leaves at most the temporary,
which the writer removes on an error; a folder is staged the same way
(`replacing_directory`). Local paths go through `os` (and are fsynced before
the rename), so that preparation's worker processes need not import
TensorFlow; other paths (`gs://`, `ram://`) go through `tf.io.gfile`,
imported when first needed. The few reads (`exists`, `isdir`, `size`,
`read_text`) take both kinds of path alike.
"""

import contextlib
import hashlib
import json
import os
import shutil
from typing import Any, Iterator
import uuid

# Marks a temporary name: `<path>.tmp-<token>`.
TMP_MARK = '.tmp-'
CACHE_DIR_ENV = 'TRAINER_CACHE_DIR'
DEFAULT_CACHE_DIR = os.path.join('~', '.cache', 'movinet-trainer')
_CHUNK_BYTES = 1 << 20


def _is_local(path: str) -> bool:
  return '://' not in os.fspath(path)


def _gfile():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


def reason(error: BaseException) -> str:
  """The first line of an error's message, for a one-line error."""
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else type(error).__name__


def temporary_name(path: str, token: str, suffix: str = '',
                   hidden: bool = False) -> str:
  """`<path>.tmp-<token><suffix>`: where `path` is written before its rename.

  `suffix` keeps what a writer reads from a file name (e.g. `.keras`);
  `hidden` starts the file name with a dot (`<folder>/.<name>.tmp-...`), so
  that whoever lists the folder (e.g. a folder of videos) passes it over.
  """
  if hidden:
    folder, name = os.path.split(path)
    path = os.path.join(folder, '.' + name)
  return f'{path}{TMP_MARK}{token}{suffix}'


def _exists(path: str) -> bool:
  return os.path.lexists(path) if _is_local(path) else _gfile().exists(path)


def exists(path: str) -> bool:
  """Whether `path` (local or `gs://`) exists."""
  return os.path.exists(path) if _is_local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
  """Whether `path` (local or `gs://`) is a folder."""
  return os.path.isdir(path) if _is_local(path) else _gfile().isdir(path)


def size(path: str) -> int:
  """The size in bytes of the file at `path` (local or `gs://`)."""
  if _is_local(path):
    return os.path.getsize(path)
  return _gfile().stat(path).length


def read_text(path: str) -> str:
  """The UTF-8 text of the file at `path` (local or `gs://`)."""
  if _is_local(path):
    with open(path, encoding='utf-8') as f:
      return f.read()
  with _gfile().GFile(path, 'r') as f:
    return f.read()


def json_text(value: Any) -> str:
  """`value` as stable JSON text: sorted keys, one-space indent, newline.

  Equal values give equal bytes, which is what lets a resumed preparation
  write the same files as an uninterrupted one.
  """
  return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


def _remove(path: str) -> None:
  if _is_local(path):
    os.remove(path)
  else:
    _gfile().remove(path)


@contextlib.contextmanager
def replacing(path: str, token: str | None = None, suffix: str = '',
              hidden: bool = False) -> Iterator[str]:
  """Yields a temporary path to write `path` under; renames it over `path`.

  When the block ends without an error the temporary replaces `path` (a
  previous file there stays until then); on an error it is removed and the
  error raised again.

  Args:
    path: The file to write, local or `gs://`.
    token: Names the temporary (`temporary_name`); a random one if None. A
      caller that must find its temporaries after a crash passes its own.
    suffix: Appended to the temporary name, for writers that choose the
      format by the file name.
    hidden: Hide the temporary from listings (see `temporary_name`).
  """
  temporary = temporary_name(os.fspath(path), token or uuid.uuid4().hex,
                             suffix, hidden)
  try:
    yield temporary
    if _is_local(temporary):
      os.replace(temporary, path)
    else:
      _gfile().rename(temporary, path, overwrite=True)
  except BaseException:
    if _exists(temporary):
      _remove(temporary)
    raise


@contextlib.contextmanager
def replacing_directory(path: str) -> Iterator[str]:
  """Yields a new empty local folder to fill; renames it to `path` after.

  The folder is hidden beside `path` (see `temporary_name`). When the block
  ends without an error it becomes `path`, unless another process made
  `path` meanwhile (the same work, finished first): theirs is kept. On an
  error, and in that case, the temporary folder is removed.
  """
  temporary = temporary_name(os.fspath(path), uuid.uuid4().hex, hidden=True)
  os.makedirs(temporary)
  try:
    yield temporary
    try:
      os.replace(temporary, path)
    except OSError:
      if not os.path.isdir(path):
        raise
  finally:
    shutil.rmtree(temporary, ignore_errors=True)


def write_atomically(path: str, contents: str | bytes,
                     token: str | None = None) -> None:
  """Writes `contents` (text as UTF-8, or bytes) to `path` whole or not at
  all; see `replacing`."""
  mode = 'wb' if isinstance(contents, bytes) else 'w'
  with replacing(path, token) as temporary:
    if not _is_local(temporary):
      with _gfile().GFile(temporary, mode) as f:
        f.write(contents)
      return
    encoding = None if 'b' in mode else 'utf-8'
    with open(temporary, mode, encoding=encoding) as f:
      f.write(contents)
      f.flush()
      os.fsync(f.fileno())


def sha256(path: str) -> str:
  """Hex sha256 of the file at `path` (local or `gs://`)."""
  digest = hashlib.sha256()
  opened = (open(path, 'rb') if _is_local(path)  # pylint: disable=consider-using-with
            else _gfile().GFile(path, 'rb'))
  with opened as f:
    while chunk := f.read(_CHUNK_BYTES):
      digest.update(chunk)
  return digest.hexdigest()


def cache_dir(chosen: str | None = None) -> str:
  """`chosen`, else `$TRAINER_CACHE_DIR`, else `~/.cache/movinet-trainer`,
  as an absolute path."""
  chosen = chosen or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
  return os.path.abspath(os.path.expanduser(chosen))


def save_model(model, path: str) -> None:
  """Saves a Keras `model` to `path` (`.keras`) whole or not at all.

  Raises:
    OSError: naming `path`, when the save fails (e.g. a full disk); the
      temporary file is removed and a previous file at `path` stays.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    with replacing(path, suffix='.keras') as temporary:
      model.save(temporary)
  except (OSError, tf.errors.OpError) as error:
    raise OSError(f'Could not save {path}: {reason(error)}. Free space there '
                  '(or fix the cause) and rerun the same command to '
                  'resume.') from error


def checkpoint_reader(prefix: str):
  """A reader of the TensorFlow checkpoint `prefix` (local or `gs://`).

  Not `tf.train.load_checkpoint`, which first asks whether `prefix` is a
  directory: a file system without real directories (TensorFlow's ram://,
  which the tests use in place of gs://) says yes to any prefix of a file's
  name ('ckpt-2' of 'ckpt-2.index').
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.compat.v1.train.NewCheckpointReader(prefix)
