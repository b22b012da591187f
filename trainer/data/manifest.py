"""`manifest.json`: what a prepared directory holds, read, checked, written.

`movinet-prepare` writes one `manifest.json` beside the shards of a prepared
directory; the pipeline reads it back. It names the labels (a clip's label
index points into them), each split's shards (file, clip count, sha256,
size in bytes, the distinct label indices of its clips), how the frames
and the source were prepared, the videos left out and why, and each video
written: its shard, the decoder that read it (OpenCV or PyAV), its records
(segments) and frames:

  manifest = Manifest.read('/data/ucf101_10')   # checks the structure
  manifest.check_files()                        # every shard, no record read
  train = manifest.split('train', what='build_inputs.train_split')

`Manifest.read` refuses a missing directory or manifest, text that is not
JSON and a structure that is not a manifest's, each with one line naming
the file and the fix. `check_files` checks, without reading a record, that
every shard exists with the size recorded and holds only label indices of
the label list. Manifests written before sizes and label indices were
recorded lack them (None): their sizes are not checked (one warning), and
their clips' labels are checked while they are read (`pipeline`); those
written before videos were recorded list none.

Nothing here imports TensorFlow, so that preparation's worker processes
stay light; paths may be local or `gs://` (through `trainer.files`).
"""

import collections.abc
import dataclasses
import hashlib
import json
import os
import types
import typing
from typing import Any, Mapping, Optional, Union

from absl import logging

from trainer import files
from trainer.data import schema

PREPARE_HINT = 'run `movinet-prepare --output_dir=%s` to prepare it'
REPAIR_HINT = ('rerun `movinet-prepare` with the same flags into a new '
               '--output_dir to repair it')
# What the fingerprint of a split counts of each shard (`fingerprint`).
_IDENTITY_KEYS = ('file', 'num_clips', 'sha256')


class _Malformed(Exception):
  """A part of the JSON that is not what a manifest holds there."""

  def __init__(self, where: str, value: Any, expected: str):
    super().__init__(where, value, expected)
    self.where, self.value, self.expected = where, value, expected


_SCALARS = {int: 'an int', float: 'a number', str: 'a string'}


def _parse(kind, value: Any, where: str):
  """The JSON `value` as the annotated type `kind`; `where` names it."""
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (Union, types.UnionType):  # Optional[...]
    return None if value is None else _parse(args[0], value, where)
  if dataclasses.is_dataclass(kind):
    if not isinstance(value, dict):
      raise _Malformed(where, value, 'an object')
    hints = typing.get_type_hints(kind)
    return kind(**{
        field.name: _parse(hints[field.name], value.get(field.name),
                           f'{where}[{field.name!r}]' if where
                           else field.name)
        for field in dataclasses.fields(kind)
        if field.metadata.get('json', True) and (
            field.name in value or field.default is dataclasses.MISSING)})
  if origin is tuple:
    if not isinstance(value, list):
      raise _Malformed(where, value, 'a list')
    return tuple(_parse(args[0], item, f'{where}[{i}]')
                 for i, item in enumerate(value))
  if origin is collections.abc.Mapping:
    if not isinstance(value, dict):
      raise _Malformed(where, value, 'an object')
    return {key: item if args[1] is Any else
            _parse(args[1], item, f'{where}[{key!r}]')
            for key, item in value.items()}
  allowed = (int, float) if kind is float else kind
  if isinstance(value, bool) or not isinstance(value, allowed):
    raise _Malformed(where, value, _SCALARS[kind])
  return value


def _to_json(value: Any) -> Any:
  """The JSON of a manifest's part: a field that may be absent (it has a
  default) is left out when None."""
  if dataclasses.is_dataclass(value):
    return {field.name: _to_json(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.metadata.get('json', True) and not (
                getattr(value, field.name) is None
                and field.default is not dataclasses.MISSING)}
  if isinstance(value, tuple):
    return [_to_json(item) for item in value]
  if isinstance(value, collections.abc.Mapping):
    return {key: _to_json(item) for key, item in value.items()}
  return value


@dataclasses.dataclass(frozen=True)
class Shard:
  """One TFRecord file of a split.

  Attributes:
    file: its name, relative to the prepared directory.
    num_clips: the records it holds.
    sha256: hex sha256 of the file (`movinet-prepare --verify` compares it).
    size: its size in bytes (checked before training); None in manifests
      written before sizes were recorded.
    label_indices: the distinct label indices of its clips, sorted; None in
      manifests written before they were recorded.
  """
  file: str
  num_clips: int
  sha256: Optional[str] = None
  size: Optional[int] = None
  label_indices: Optional[tuple[int, ...]] = None


@dataclasses.dataclass(frozen=True)
class Split:
  """The shards of one split (e.g. 'train'): `num_clips` in all of them,
  and `num_frames` in all their clips (None if not recorded)."""
  num_clips: int
  shards: tuple[Shard, ...]
  num_frames: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Frames:
  """How the frames were kept.

  Attributes:
    fps: frames per second kept; None kept the source rate.
    short_side: the largest short side in pixels (smaller videos kept their
      size); 0 kept every size.
    jpeg_quality: JPEG quality of the frames, 1..100.
    min_frames: videos with fewer frames were skipped.
    max_seconds: the longest record in seconds (longer videos were cut
      into segments); 0.0: no limit; None: written before segments.
  """
  fps: Optional[float]
  short_side: Optional[int]
  jpeg_quality: int
  min_frames: Optional[int] = None
  max_seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the videos came from: `kind` is 'synthetic', 'folder' or
  'ucf101'; `video_dir` and `ucf101_url` are None where they do not apply."""
  kind: str
  video_dir: Optional[str]
  ucf101_url: Optional[str]


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A video (or a folder, ending in '/') left out, and why."""
  video: str
  reason: str


@dataclasses.dataclass(frozen=True)
class Video:
  """A video written: `video` its name (its records' `video/filename`),
  `shard` the file holding its records, `decoder` what read it ('opencv',
  or 'pyav' for what OpenCV cannot decode, such as AV1), `segments` its
  records (`video/segment` 0, 1, ... in order; several for a video longer
  than `Frames.max_seconds`) and `frames` theirs."""
  video: str
  shard: str
  decoder: str
  segments: int
  frames: int


def _prepare_error(what: str, data_dir: str) -> ValueError:
  return ValueError(f'{what}; {PREPARE_HINT % data_dir}.')


@dataclasses.dataclass(frozen=True)
class Manifest:
  """The `manifest.json` of a prepared directory.

  Attributes:
    labels: the class names; a clip's label index points into them.
    splits: the splits by name (e.g. 'train', 'test').
    format: the preparation's output format (`movinet-prepare/2`).
    frames: how the frames were kept.
    source: where the videos came from.
    settings: the `movinet-prepare` settings that change output bytes, as
      recorded (JSON), which a rerun compares with its own (see
      `prepare_settings.PrepareSettings.recorded`).
    skipped: the videos and folders left out, sorted.
    videos: the videos written, sorted by name; empty in manifests written
      before they were recorded.
    data_dir: the directory it was read from or written to (not part of
      the JSON, nor of equality).
  """
  labels: tuple[str, ...]
  splits: Mapping[str, Split]
  format: Optional[str] = None
  frames: Optional[Frames] = None
  source: Optional[Source] = None
  settings: Optional[Mapping[str, Any]] = None
  skipped: tuple[Skipped, ...] = ()
  videos: tuple[Video, ...] = ()
  data_dir: Optional[str] = dataclasses.field(
      default=None, compare=False, metadata={'json': False})

  @property
  def num_classes(self) -> int:
    return len(self.labels)

  @property
  def path(self) -> str:
    """The manifest's file: `<data_dir>/manifest.json`."""
    return os.path.join(self.data_dir or '', schema.MANIFEST_NAME)

  @classmethod
  def read(cls, data_dir: str) -> 'Manifest':
    """Reads `manifest.json` of a prepared directory (local or `gs://`).

    Args:
      data_dir: the `--output_dir` given to `movinet-prepare`.

    Returns:
      The manifest, bound to `data_dir`.

    Raises:
      ValueError: `data_dir` or its manifest is missing, not JSON, or not
        a manifest's structure (the message names the part, e.g.
        `splits['train']['shards'][0]`); says how to prepare it.
    """
    if not files.isdir(data_dir):
      raise _prepare_error(f'data_dir={data_dir!r} is not a directory',
                           data_dir)
    path = os.path.join(data_dir, schema.MANIFEST_NAME)
    if not files.exists(path):
      raise _prepare_error(f'No manifest at {path!r}', data_dir)
    try:
      entry = json.loads(files.read_text(path))
    except json.JSONDecodeError as error:
      raise _prepare_error(f'Manifest {path!r} is not valid JSON ({error})',
                           data_dir) from error
    return cls.from_json(entry, data_dir)

  @classmethod
  def from_json(cls, entry: Any, data_dir: str) -> 'Manifest':
    """The manifest of the JSON value `entry`, bound to `data_dir`.

    Raises:
      ValueError: as `read`.
    """
    path = os.path.join(data_dir, schema.MANIFEST_NAME)
    for key in ('labels', 'splits'):
      if not isinstance(entry, dict) or key not in entry:
        raise _prepare_error(f'Manifest {path!r} lacks the key {key!r}',
                             data_dir)
    labels = entry['labels']
    if (not isinstance(labels, list) or not labels
        or not all(isinstance(label, str) for label in labels)
        or len(set(labels)) != len(labels)):
      raise _prepare_error(f'Manifest {path!r} has labels={labels!r}; they '
                           'must be a non-empty list of distinct names',
                           data_dir)
    splits = entry['splits'] if isinstance(entry['splits'], dict) else {}
    for split, part in splits.items():
      for shard in part.get('shards', []) if isinstance(part, dict) else []:
        if not isinstance(shard, dict) or not isinstance(
            shard.get('file'), str) or not isinstance(shard.get('num_clips'),
                                                      int):
          raise _prepare_error(f'Manifest {path!r} lists a shard of split '
                               f'{split!r} without file or num_clips: '
                               f'{shard}', data_dir)
    try:
      manifest = _parse(cls, entry, '')
    except _Malformed as error:
      raise _prepare_error(
          f'Manifest {path!r} has {error.where}={error.value!r}; it must be '
          f'{error.expected}', data_dir) from None
    return dataclasses.replace(manifest, data_dir=data_dir)

  def to_json(self) -> dict[str, Any]:
    """The JSON object `write` writes (a None part is left out)."""
    return _to_json(self)

  def write(self, data_dir: str, token: Optional[str] = None) -> 'Manifest':
    """Writes `<data_dir>/manifest.json` whole or not at all.

    The text is stable (`files.json_text`): the same manifest always gives
    the same bytes.

    Args:
      data_dir: the prepared directory.
      token: names the temporary file (see `files.replacing`).

    Returns:
      The manifest, bound to `data_dir`.
    """
    path = os.path.join(data_dir, schema.MANIFEST_NAME)
    files.write_atomically(path, files.json_text(self.to_json()), token)
    return dataclasses.replace(self, data_dir=data_dir)

  def shard_path(self, shard: Shard) -> str:
    """The full path of `shard`'s file."""
    return os.path.join(self.data_dir or '', shard.file)

  def split(self, name: str, what: str = 'split') -> Split:
    """The split called `name`, which must hold clips.

    Args:
      name: the split, e.g. 'train'.
      what: the setting that chose it, named in the error (e.g.
        'build_inputs.train_split').

    Raises:
      ValueError: the manifest has no split `name` (the message lists those
        it has), or it holds no clips.
    """
    if name not in self.splits:
      raise ValueError(f'{what}={name!r} is not a split of {self.data_dir}; '
                       f'it has {sorted(self.splits)}.')
    split = self.splits[name]
    if not split.num_clips or not split.shards:
      raise ValueError(f'Split {name!r} of {self.data_dir} has no clips; '
                       'prepare it again with more videos, or bind '
                       f'{what} to another split.')
    return split

  def fingerprint(self, split: str) -> str:
    """Identifies the labels and the shards of `split` (by content).

    Only a shard's file, clip count and sha256 count, so that a manifest
    that also records sizes and label indices keeps the fingerprint of the
    same shards. 16 hex digits.
    """
    shards = [_to_json(shard) for shard in self.splits[split].shards]
    identity = {'labels': list(self.labels),
                'shards': [{k: s[k] for k in _IDENTITY_KEYS if k in s}
                           for s in shards]}
    return hashlib.sha256(
        json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

  def check_present(self, split: str) -> None:
    """Raises ValueError naming the first shard of `split` that is missing."""
    for shard in self.splits[split].shards:
      self._check_present(shard)

  def _check_present(self, shard: Shard) -> None:
    shard_path = self.shard_path(shard)
    if not files.exists(shard_path):
      raise ValueError(f'Shard {shard_path} listed in {self.path} is missing; '
                       f'{REPAIR_HINT}.')

  def check_files(self) -> None:
    """Checks every shard against the manifest without reading a record.

    The label indices recorded for each shard must lie in the label list;
    every shard file must exist with the recorded size. Shards whose size
    was not recorded (older manifests) get one warning and no size check.

    Raises:
      ValueError: the first problem found, naming the shard and the fix.
    """
    unsized = 0
    for split in self.splits.values():
      for shard in split.shards:
        shard_path = self.shard_path(shard)
        outside = [i for i in shard.label_indices or ()
                   if not 0 <= i < self.num_classes]
        if outside:
          raise ValueError(
              f'Shard {shard_path} holds label indices {outside}, outside '
              f'the {self.num_classes} labels of {self.path}; '
              f'{REPAIR_HINT}.')
        self._check_present(shard)
        if shard.size is None:
          unsized += 1
          continue
        size = files.size(shard_path)
        if size != shard.size:
          raise ValueError(
              f'Shard {shard_path} has {size} bytes, but {self.path} records '
              f'{shard.size} (truncated or replaced); {REPAIR_HINT}.')
    if unsized:
      logging.warning(
          '%s records no size for %d shard(s) (prepared by an older '
          'version); their sizes are not checked.', self.path, unsized)
