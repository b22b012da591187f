"""`movinet-prepare` settings and the `output_dir` they go to.

`PrepareSettings` holds the settings of one run, checked where they enter,
with the per-source defaults filled; `check_output_dir` refuses a non-empty
`output_dir` that is not a previous preparation (unless `overwrite`);
`check_previous` refuses an `output_dir` begun or finished with settings
that change output bytes (`prepare_lock` refuses a second run into an
`output_dir` while one runs). Errors name the setting, the value, what is
allowed and the flag to fix.
"""

import dataclasses
import json
import os
from typing import Any, Optional

from trainer import files
from trainer import settings as settings_lib
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data import sources
from trainer.data import synthetic
from trainer.data.manifest import Manifest

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
# Foreign entries named when a non-empty output_dir is refused.
_NAMED_ENTRIES = 3
# Longest record, in seconds of video: a longer video is split into
# consecutive segments. A minute holds the longest clip of MoViNet's
# Kinetics recipes (50 frames at 5 fps: 10 s) several times over; its record
# (1500 frames at 25 fps) takes some 30 MB at the default short side of
# 256 px and some 400 MB at 1080p (JPEG quality 90 of natural scenes, from
# UCF101's ~16 KB a 320 x 240 frame), far under protobuf's 2 GB limit, and
# a worker holds one record at a time.
DEFAULT_MAX_SECONDS = 60.0
# Output format; part of the settings, so a rerun refuses (instead of
# resuming) a folder written by another format. 2: short_side is a maximum.
# 3: records carry video/segment; videos longer than max_seconds are split.
FORMAT = 'movinet-prepare/3'

# Settings that change no output byte; left out of the compatibility check.
_NOT_RECORDED = ('workers', 'output_dir', 'synthetic_dir', 'overwrite')


class PrepareError(ValueError):
  """Bad settings or source, found before anything is written."""


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
  """The settings of one `movinet-prepare` run; the flags of the same names.

  Made with the flags' values, it fills the per-source defaults where a
  value is None (`splits`: DEFAULT_SPLITS; `short_side`:
  DEFAULT_SHORT_SIDE, the largest short side in px, never upscaling, 0
  keeps every size; `num_classes`: 4 synthetic, else all; `fps` 0 or None:
  the source rate; `max_seconds` None: DEFAULT_MAX_SECONDS, the longest
  record in seconds, 0 no limit; `workers`: os.cpu_count();
  `synthetic_dir`: `output_dir/source_videos`), sets the settings that do
  not apply to the source to None, and checks every value.

  Raises:
    PrepareError: a value out of range or that does not fit the source;
      the message names the setting and its flag.
  """
  output_dir: str
  source: str = 'synthetic'
  video_dir: Optional[str] = None
  ucf101_url: Optional[str] = sources.DEFAULT_UCF101_URL
  num_classes: Optional[int] = None
  splits: Optional[str] = None
  split_by: str = 'count'
  fold: int = 1
  seed: int = 0
  fps: Optional[float] = None
  short_side: Optional[int] = None
  jpeg_quality: int = 90
  shard_clips: int = 64
  num_shards: Optional[int] = None
  workers: Optional[int] = None
  min_frames: int = 8
  max_seconds: Optional[float] = DEFAULT_MAX_SECONDS
  synthetic_dir: Optional[str] = None
  synthetic_frames: Optional[int] = SYNTHETIC_FRAMES
  synthetic_size: Optional[tuple[int, int]] = SYNTHETIC_SIZE
  synthetic_fps: Optional[float] = SYNTHETIC_FPS
  overwrite: bool = False

  def __post_init__(self):
    try:
      settings_lib.check_choice(self, 'source', SOURCES)
      settings_lib.check_choice(self, 'split_by', SPLIT_BY)
      self._fill_defaults()
      settings_lib.check_types(self)
      self._check_values()
      self._fit_source()
    except settings_lib.SettingError as error:
      raise PrepareError(f'{error} (flag --{error.name}).') from None

  def _set(self, **values) -> None:
    for name, value in values.items():
      object.__setattr__(self, name, value)

  def _fill_defaults(self) -> None:
    """Fills the per-source defaults and normalizes the values' types."""
    number = (int, float)
    self._set(
        output_dir=(os.fspath(self.output_dir)
                    if isinstance(self.output_dir, os.PathLike)
                    else self.output_dir),
        splits=self.splits or DEFAULT_SPLITS[self.source],
        short_side=(DEFAULT_SHORT_SIDE if self.short_side is None
                    else self.short_side),
        num_classes=(SYNTHETIC_NUM_CLASSES if self.source == 'synthetic'
                     and self.num_classes is None else self.num_classes),
        fps=(float(self.fps) if isinstance(self.fps, number) and self.fps
             else self.fps or None),
        max_seconds=(DEFAULT_MAX_SECONDS if self.max_seconds is None
                     else float(self.max_seconds)
                     if isinstance(self.max_seconds, number)
                     else self.max_seconds),
        workers=self.workers or os.cpu_count() or 1)
    if self.synthetic_size is not None:
      self._set(synthetic_size=tuple(int(v) for v in self.synthetic_size))
    if isinstance(self.synthetic_fps, number):
      self._set(synthetic_fps=float(self.synthetic_fps))

  def _check_values(self) -> None:
    """Raises SettingError for the first value out of its range."""
    def error(name: str, problem: str) -> settings_lib.SettingError:
      return settings_lib.SettingError(type(self).__name__, name,
                                       getattr(self, name), problem)

    if not self.output_dir:
      raise error('output_dir', 'is empty; pass a folder')
    settings_lib.check_at_least(self, 0, 'short_side')
    settings_lib.check_at_least(self, 1, 'jpeg_quality', 'shard_clips',
                                'workers', 'min_frames', 'fold',
                                'synthetic_frames', 'num_shards')
    if self.jpeg_quality > 100:
      raise error('jpeg_quality', 'must be at most 100')
    if self.fps is not None and self.fps < 0:
      raise error('fps', 'must be a positive rate in frames per second, or 0 '
                  'for the source rate')
    if not 0 <= self.max_seconds < float('inf'):
      raise error('max_seconds', 'must be a positive number of seconds, or '
                  '0 for no limit (a whole video per record)')
    if self.source == 'synthetic' and self.split_by == 'group':
      raise error('split_by', 'needs UCF101 names (v_<Class>_gNN_cNN.avi); '
                  'synthetic videos have none, use count')
    most = len(synthetic.CLASS_NAMES)
    if self.source == 'synthetic' and not 2 <= self.num_classes <= most:
      raise error('num_classes', f'is not allowed for the synthetic source; '
                  f'pass 2..{most}')
    if self.source == 'folder' and not self.video_dir:
      raise error('video_dir', 'is needed by source=folder: pass the folder '
                  'of class subfolders')

  def _fit_source(self) -> None:
    """Sets what does not apply to the source to None; checks the folders."""
    if self.source == 'folder':
      self._set(video_dir=os.path.abspath(os.fspath(self.video_dir)))
      _check_outside(self.output_dir, self.video_dir)
    else:
      self._set(video_dir=None)
    if self.source != 'ucf101':
      self._set(ucf101_url=None)
    if self.source == 'synthetic':
      self._set(synthetic_dir=self.synthetic_dir or os.path.join(
          self.output_dir, 'source_videos'))
    else:
      self._set(synthetic_frames=None, synthetic_size=None,
                synthetic_fps=None)

  def recorded(self) -> dict[str, Any]:
    """The settings that change output bytes, as JSON, with the `format`.

    `.prepare/settings.json` and the manifest's `settings` record them; a
    rerun compares them with its own (`check_previous`).
    """
    values = {field.name: getattr(self, field.name)
              for field in dataclasses.fields(self)
              if field.name not in _NOT_RECORDED}
    return json.loads(files.json_text(dict(values, format=FORMAT)))


def check_previous(settings: PrepareSettings) -> None:
  """Refuses an output_dir prepared (or begun) with other settings.

  Raises:
    PrepareError: the manifest or `.prepare/settings.json` in `output_dir`
      holds other output settings (the message lists the differing keys),
      or the manifest cannot be read.
  """
  wanted = settings.recorded()
  out = settings.output_dir
  for previous in _previous_settings(out):
    if previous != wanted:
      changed = sorted(k for k in set(wanted) | set(previous or {})
                       if (previous or {}).get(k) != wanted.get(k))
      raise PrepareError(
          f'output_dir={out!r} holds a dataset prepared with other settings '
          f'(differing: {", ".join(changed)}); pass a new --output_dir, or '
          'delete this one to redo it.')


def _previous_settings(output_dir: str) -> list[Any]:
  """What earlier runs into `output_dir` recorded of their settings.

  The manifest's `settings` (None if it has none), then those of
  `.prepare/settings.json`; each only if its file exists.
  """
  found = []
  if os.path.exists(os.path.join(output_dir, schema.MANIFEST_NAME)):
    try:
      found.append(Manifest.read(output_dir).settings)
    except ValueError as error:
      raise PrepareError(str(error)) from error
  state = os.path.join(output_dir, shard_worker.STATE_DIR, SETTINGS_NAME)
  if os.path.exists(state):
    with open(state, encoding='utf-8') as f:
      found.append(json.load(f))
  return found


def check_output_dir(settings: PrepareSettings) -> None:
  """Refuses a non-empty output_dir that no preparation wrote to.

  A folder holding `manifest.json` or `.prepare/` is a previous
  preparation (resumed or checked by `check_previous`); any other
  non-empty folder is refused unless `settings.overwrite`, which
  prepares beside its entries.

  Raises:
    PrepareError: `output_dir` is a file, or a non-empty folder that is not
      a previous preparation and `overwrite` is false; the message names
      the first few entries.
  """
  out = settings.output_dir
  if os.path.exists(out) and not os.path.isdir(out):
    raise PrepareError(f'output_dir={out!r} is a file; pass a folder (flag '
                       '--output_dir).')
  if settings.overwrite or not os.path.isdir(out):
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


def _check_outside(output_dir, video_dir):
  """Refuses an output_dir inside video_dir: a rerun would list it."""
  out = os.path.realpath(output_dir)
  videos = os.path.realpath(video_dir)
  if os.path.commonpath([out, videos]) == videos:
    raise settings_lib.SettingError(
        PrepareSettings.__name__, 'output_dir', output_dir,
        f'is inside video_dir={video_dir!r}, where a rerun would list it as '
        'a class; pass one outside it')
