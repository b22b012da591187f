"""`movinet-prepare` settings: per-source defaults, checks, compatibility.

`check_settings` validates the arguments of `prepare.prepare` where they
enter and fills the per-source defaults; `check_previous` refuses an
`output_dir` begun or finished with settings that change output bytes.
Errors name the argument, the value, what is allowed and the flag to fix.
"""

import json
import os

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
# Output format; part of the settings, so a rerun refuses (instead of
# resuming) a folder written by another format. 2: short_side is a maximum.
FORMAT = 'movinet-prepare/2'

# Settings that change no output byte; left out of the compatibility check.
_NOT_OUTPUT = ('workers', 'output_dir', 'synthetic_dir')


class PrepareError(ValueError):
  """Bad settings or source, found before anything is written."""


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
  if source == 'folder':
    s['video_dir'] = os.path.abspath(os.fspath(s['video_dir']))
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
