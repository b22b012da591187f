"""Atomic writes into `model_dir` (local or gs://)."""

import uuid

import tensorflow as tf


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
