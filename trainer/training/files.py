"""Atomic writes into `model_dir` (local or gs://)."""

import uuid

import tensorflow as tf


def reason(error: BaseException) -> str:
  """The first line of an error's message, for a one-line error."""
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else type(error).__name__


def write_atomically(path: str, contents, mode: str = 'w') -> None:
  """Writes `contents` to a temporary file beside `path`, then renames it,
  so a reader never sees a partial file; the temporary file never stays."""
  temporary = f'{path}.tmp-{uuid.uuid4().hex}'
  try:
    with tf.io.gfile.GFile(temporary, mode) as f:
      f.write(contents)
    tf.io.gfile.rename(temporary, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
    raise
