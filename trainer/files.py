"""Files written whole or not at all, their hashes, and the cache folder.

Preparation, the model's checkpoint sources and the trainer all write
through here. A file is written under a temporary name beside it
(`temporary_name`) and renamed over it only once complete, so a reader never
sees part of one and an interrupted write leaves at most the temporary,
which the writer removes on an error. Local paths go through `os` (and are
fsynced before the rename), so that preparation's worker processes need not
import TensorFlow; other paths (`gs://`, `ram://`) go through
`tf.io.gfile`, imported when first needed.
"""

import contextlib
import hashlib
import os
from typing import Iterator
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


def temporary_name(path: str, token: str, suffix: str = '') -> str:
  """`<path>.tmp-<token><suffix>`: where `path` is written before its rename.

  `suffix` keeps what a writer reads from a file name (e.g. `.keras`).
  """
  return f'{path}{TMP_MARK}{token}{suffix}'


def _exists(path: str) -> bool:
  return os.path.lexists(path) if _is_local(path) else _gfile().exists(path)


def _remove(path: str) -> None:
  if _is_local(path):
    os.remove(path)
  else:
    _gfile().remove(path)


@contextlib.contextmanager
def replacing(path: str, token: str | None = None,
              suffix: str = '') -> Iterator[str]:
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
  """
  temporary = temporary_name(os.fspath(path), token or uuid.uuid4().hex,
                             suffix)
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
