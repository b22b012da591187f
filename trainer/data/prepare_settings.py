"""`movinet-prepare` settings and the `output_dir` they go to.

`check_settings` validates the arguments of `prepare.prepare` where they
enter and fills the per-source defaults; `check_output_dir` refuses a
non-empty `output_dir` that is not a previous preparation (unless
`overwrite`); `check_previous` refuses an `output_dir` begun or finished
with settings that change output bytes; `acquire_lock` refuses a second
run into an `output_dir` while one runs. Errors name the argument, the
value, what is allowed and the flag to fix.
"""

import json
import os
import socket
import time

from absl import logging

from trainer.data import schema
from trainer.data import shard_worker

SOURCES = ('synthetic', 'folder', 'ucf101')
SPLIT_BY = ('count', 'group')
# Per-class split counts when --splits is unset. Synthetic: 64 videos per
# class, enough to learn the four motions, with a test set large enough
# (16 per class) that accuracy is not a coin flip.
DEFAULT_SPLITS = {'synthetic': 'train:48,test:16',
                  'folder': 'train:30,test:20', 'ucf101': 'train:30,test:20'}
# Largest short side kept, in px, for every source: MoViNet trains on
# 172..320 px crops and random-resized crops need margin. Smaller videos are
# never upscaled (synthetic 120 x 160, UCF101 240 x 320 keep their size).
DEFAULT_SHORT_SIDE = 256
SYNTHETIC_NUM_CLASSES = 4
SYNTHETIC_SIZE = (120, 160)
SYNTHETIC_FRAMES = 16
SYNTHETIC_FPS = 10.0
SETTINGS_NAME = 'settings.json'
# Created exclusively under `.prepare/` by the run that writes output_dir.
LOCK_NAME = 'lock'
# A lock still empty after this long lost its writer between create and write.
_EMPTY_LOCK_STALE_S = 10.0
# Foreign entries named when a non-empty output_dir is refused.
_NAMED_ENTRIES = 3
# Output format; part of the settings, so a rerun refuses (instead of
# resuming) a folder written by another format. 2: short_side is a maximum.
FORMAT = 'movinet-prepare/2'

# Settings that change no output byte; left out of the compatibility check.
_NOT_OUTPUT = ('workers', 'output_dir', 'synthetic_dir', 'overwrite')


class PrepareError(ValueError):
  """Bad settings or source, found before anything is written."""


class PreparationBusy(PrepareError):
  """Another run holds the output folder's lock (it is alive)."""


def check_settings(**given) -> dict:
  """Checks `prepare`'s arguments and fills the per-source defaults.

  Returns:
    The settings: `given` with defaults filled, values normalized, settings
    that do not apply to the source set to None, and `format` added.

  Raises:
    PrepareError: a value is out of range or does not fit the source.
  """
  s = dict(given)
  _check_choice('source', s['source'], SOURCES)
  _check_choice('split_by', s['split_by'], SPLIT_BY)
  if not s['output_dir']:
    raise PrepareError('output_dir is empty; pass a folder (flag '
                       '--output_dir).')
  if s['source'] == 'folder' and not s['video_dir']:
    raise PrepareError('source=folder needs video_dir; pass the folder of '
                       'class subfolders (flag --video_dir).')
  source = s['source']
  s['format'] = FORMAT
  s['splits'] = s['splits'] or DEFAULT_SPLITS[source]
  if s['short_side'] is None:
    s['short_side'] = DEFAULT_SHORT_SIDE
  if source == 'synthetic' and s['num_classes'] is None:
    s['num_classes'] = SYNTHETIC_NUM_CLASSES
  s['fps'] = float(s['fps']) if s['fps'] else None
  s['workers'] = s['workers'] or os.cpu_count() or 1
  s['synthetic_size'] = tuple(int(v) for v in s['synthetic_size'])
  s['synthetic_fps'] = float(s['synthetic_fps'])
  for name, low, high in (('short_side', 0, None), ('jpeg_quality', 1, 100),
                          ('shard_clips', 1, None), ('workers', 1, None),
                          ('min_frames', 1, None), ('fold', 1, None),
                          ('synthetic_frames', 1, None)):
    _check_int(name, s[name], low, high)
  if s['num_shards'] is not None:
    _check_int('num_shards', s['num_shards'], 1, None)
  if s['fps'] is not None and s['fps'] < 0:
    raise PrepareError(f'fps={s["fps"]!r} is not allowed; pass a positive '
                       'rate in frames per second, or 0 for the source rate '
                       '(flag --fps).')
  if source == 'synthetic' and s['split_by'] == 'group':
    raise PrepareError('split_by=group needs UCF101 names (v_<Class>_gNN_'
                       'cNN.avi); synthetic videos have none. Use '
                       '--split_by=count.')
  s['output_dir'] = os.fspath(s['output_dir'])
  s['overwrite'] = bool(s.get('overwrite'))
  if source == 'folder':
    s['video_dir'] = os.path.abspath(os.fspath(s['video_dir']))
    _check_outside(s['output_dir'], s['video_dir'])
  else:
    s['video_dir'] = None
  if source != 'ucf101':
    s['ucf101_url'] = None
  if source != 'synthetic':
    for name in ('synthetic_frames', 'synthetic_size', 'synthetic_fps'):
      s[name] = None
  s['synthetic_dir'] = (s['synthetic_dir'] if source != 'synthetic' or
                        s['synthetic_dir'] else
                        os.path.join(s['output_dir'], 'source_videos'))
  return s


def output_settings(settings: dict) -> dict:
  """The settings that change output bytes (compared on every rerun)."""
  return {k: v for k, v in settings.items() if k not in _NOT_OUTPUT}


def check_previous(settings: dict) -> None:
  """Refuses an output_dir prepared (or begun) with other settings.

  Args:
    settings: as `check_settings` returns them.

  Raises:
    PrepareError: the manifest or `.prepare/settings.json` in `output_dir`
      holds other output settings; the message lists the differing keys.
  """
  wanted = json.loads(shard_worker.dumps(output_settings(settings)))
  out = settings['output_dir']
  for path, key in ((os.path.join(out, schema.MANIFEST_NAME), 'settings'),
                    (os.path.join(out, shard_worker.STATE_DIR,
                                  SETTINGS_NAME), None)):
    if not os.path.exists(path):
      continue
    with open(path, encoding='utf-8') as f:
      previous = json.load(f)
    previous = previous.get(key) if key else previous
    if previous != wanted:
      changed = sorted(k for k in set(wanted) | set(previous or {})
                       if (previous or {}).get(k) != wanted.get(k))
      raise PrepareError(
          f'output_dir={out!r} holds a dataset prepared with other settings '
          f'(differing: {", ".join(changed)}); pass a new --output_dir, or '
          'delete this one to redo it.')


def check_output_dir(settings: dict) -> None:
  """Refuses a non-empty output_dir that no preparation wrote to.

  A folder holding `manifest.json` or `.prepare/` is a previous
  preparation (resumed or checked by `check_previous`); any other
  non-empty folder is refused unless `settings['overwrite']`, which
  prepares beside its entries.

  Raises:
    PrepareError: `output_dir` is a file, or a non-empty folder that is not
      a previous preparation and `overwrite` is false; the message names
      the first few entries.
  """
  out = settings['output_dir']
  if os.path.exists(out) and not os.path.isdir(out):
    raise PrepareError(f'output_dir={out!r} is a file; pass a folder (flag '
                       '--output_dir).')
  if settings['overwrite'] or not os.path.isdir(out):
    return
  entries = sorted(os.listdir(out))
  if (not entries or schema.MANIFEST_NAME in entries
      or shard_worker.STATE_DIR in entries):
    return
  named = [e + '/' if os.path.isdir(os.path.join(out, e)) else e
           for e in entries[:_NAMED_ENTRIES]]
  more = len(entries) - len(named)
  raise PrepareError(
      f'output_dir={out!r} is not empty and holds no previous preparation '
      f'({", ".join(named)}{f" and {more} more" if more else ""}); pass an '
      'empty or new --output_dir, or --overwrite to prepare beside these '
      'entries (none is deleted).')


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


def _check_outside(output_dir, video_dir):
  """Refuses an output_dir inside video_dir: a rerun would list it."""
  out = os.path.realpath(output_dir)
  videos = os.path.realpath(video_dir)
  if os.path.commonpath([out, videos]) == videos:
    raise PrepareError(
        f'output_dir={output_dir!r} is inside video_dir={video_dir!r}, '
        'where a rerun would list it as a class; pass an --output_dir '
        'outside --video_dir.')


def _check_choice(name, value, allowed):
  if value not in allowed:
    raise PrepareError(f'{name}={value!r} is not allowed; pass one of '
                       f'{", ".join(allowed)} (flag --{name}).')


def _check_int(name, value, low, high):
  if (isinstance(value, bool) or not isinstance(value, int) or value < low
      or (high is not None and value > high)):
    allowed = f'{low}..{high}' if high is not None else f'>= {low}'
    raise PrepareError(f'{name}={value!r} is not allowed; pass an integer '
                       f'{allowed} (flag --{name}).')
