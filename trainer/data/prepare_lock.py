"""One `movinet-prepare` run at a time per `output_dir`: `.prepare/lock`.

A run takes the lock (`acquire_lock`) before it writes anything and gives
it back (`release_lock`) when it ends, errors included. The lock is created
exclusively and holds the holder's pid, host and token; a lock whose holder
is not alive on this host is stale, and taken over with a warning.
"""

import json
import os
import socket
import time

from absl import logging

from trainer.data import shard_worker
from trainer.data.prepare_settings import PrepareError

# Created exclusively under `.prepare/` by the run that writes output_dir.
LOCK_NAME = 'lock'
# A lock still empty after this long lost its writer between create and write.
_EMPTY_LOCK_STALE_S = 10.0


class PreparationBusy(PrepareError):
  """Another run holds the output folder's lock (it is alive)."""


def acquire_lock(output_dir: str, token: str) -> None:
  """Takes `output_dir/.prepare/lock` for this run, or refuses.

  The lock is created exclusively and holds the holder's pid, host and
  token. A lock whose holder is not alive on this host is stale and taken
  over, with a warning.

  Args:
    output_dir: The prepared folder; `.prepare/` exists.
    token: This run's token (`shard_worker.new_token`).

  Raises:
    PreparationBusy: another run holds the lock; the message names it.
  """
  path = os.path.join(output_dir, shard_worker.STATE_DIR, LOCK_NAME)
  mine = {'pid': os.getpid(), 'host': socket.gethostname(), 'token': token}
  for _ in range(10):
    if _create_exclusively(path, mine):
      return
    holder = _read_lock(path)
    if holder is None:
      continue  # released meanwhile
    if not _is_stale(path, holder):
      raise PreparationBusy(
          f'output_dir={output_dir!r} is being prepared by another run '
          f'(pid {holder.get("pid", "?")} on {holder.get("host", "?")}, '
          f'lock {path}); wait for it to end, or pass another --output_dir.')
    if _take_over(path, holder, mine):
      logging.warning('Took over the stale lock %s of pid %s on %s, which '
                      'is no longer running.', path, holder.get('pid', '?'),
                      holder.get('host', '?'))
      return
    time.sleep(0.05)
  raise PrepareError(f'could not take the lock {path} of output_dir='
                     f'{output_dir!r}: other runs keep taking it; pass '
                     'another --output_dir.')


def release_lock(output_dir: str, token: str) -> None:
  """Removes the lock if this run (`token`) holds it."""
  path = os.path.join(output_dir, shard_worker.STATE_DIR, LOCK_NAME)
  holder = _read_lock(path)
  if holder and holder.get('token') == token:
    os.remove(path)


def _create_exclusively(path, content) -> bool:
  """Creates `path` holding `content` as JSON; False if it exists."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, 'w', encoding='utf-8') as f:
    json.dump(content, f)
    f.flush()
    os.fsync(f.fileno())
  return True


def _read_lock(path) -> dict | None:
  """The lock's holder; `{}` while it is being written; None if absent."""
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except FileNotFoundError:
    return None
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def _is_stale(path, holder) -> bool:
  """Whether the lock's holder is gone (only knowable on the same host)."""
  if not holder:  # empty: killed between create and write, or writing now
    try:
      return time.time() - os.path.getmtime(path) > _EMPTY_LOCK_STALE_S
    except FileNotFoundError:
      return False
  if holder.get('host') != socket.gethostname():
    return False
  pid = holder.get('pid')
  if not isinstance(pid, int) or pid <= 0:
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False
  return False


def _take_over(path, stale, mine) -> bool:
  """Replaces the stale lock by ours; False if another run got there first.

  One run at a time takes over, under `<lock>.takeover` (itself created
  exclusively); it replaces the lock only if it still holds `stale`.
  """
  guard = path + '.takeover'
  if not _create_exclusively(guard, mine):
    holder = _read_lock(guard)
    if holder is not None and _is_stale(guard, holder):
      try:
        os.remove(guard)
      except FileNotFoundError:
        pass
    return False
  try:
    if _read_lock(path) != stale:
      return False
    os.remove(path)
    return _create_exclusively(path, mine)
  finally:
    os.remove(guard)
