"""One shard of `movinet-prepare`: decode videos, JPEG them, write, record.

`prepare_shard(job)` runs in a `spawn` worker process, so this module imports
no TensorFlow (see `tfrecord_writer`). It streams each video: frames are
decoded (OpenCV, else PyAV: `video_decode`), resized and JPEG-encoded one at
a time, and a video longer than `max_seconds` becomes consecutive records
(`video/segment` 0, 1, ...; `SegmentCutter`), all in the video's shard, so
in its split. A shard is written as `<shard>.tmp-<token>`, fsynced and
renamed; then `.prepare/<shard>.json` records its `ShardResult` (record
count, sha256, skipped videos, the decoder of each video, ...), which
`finished_record` reads back to decide whether a rerun may keep the shard.

The token is unique to one run (`new_token`: pid and random hex). Before a
run creates a temporary path it records it in `.prepare/temporaries`
(`record_temporaries`), so that a later run removes exactly the leftovers
of killed runs (`remove_recorded`) and never another file with `.tmp-` in
its name.
"""

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
from typing import Any, Callable, Iterator, Optional

from absl import logging
import cv2

from trainer import files
from trainer.data import sources
from trainer.data import tfrecord_writer
from trainer.data import video_decode

STATE_DIR = '.prepare'
# Relative paths of the temporaries runs create, one JSON string a line.
JOURNAL_NAME = 'temporaries'
_TEMPORARY = re.compile(re.escape(files.TMP_MARK) + r'[0-9]+-[0-9a-f]{16}$')
# The rate a video without one is cut into segments at, frames per second
# (that of PAL video and of UCF101).
ASSUMED_FPS = 25.0


@dataclasses.dataclass(frozen=True)
class ShardJob:
  """One shard to write: what `prepare` hands a worker process.

  Attributes:
    file: the shard's file name, relative to `output_dir`.
    output_dir: the prepared folder.
    token: the run's token (`new_token`), which names its temporaries.
    source: 'synthetic', 'folder' or 'ucf101'.
    root: the folder the videos are read from, or the UCF101 zip's URL.
    videos: `(name, label, label index)` of each video, in shard order.
    fps: frames per second kept; None keeps the source rate.
    short_side: largest short side in px; None keeps every size.
    min_frames: videos with fewer frames are skipped.
    jpeg_quality: JPEG quality of the frames, 1..100.
    max_seconds: longest record, in seconds of video: a longer video is
      split into consecutive segments (`segment_frames`); None: no limit.
  """
  file: str
  output_dir: str
  token: str
  source: str
  root: str
  videos: tuple[tuple[str, str, int], ...]
  fps: Optional[float]
  short_side: Optional[int]
  min_frames: int
  jpeg_quality: int
  max_seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class ShardResult:
  """What a finished shard holds, recorded in `.prepare/<file>.json`.

  Attributes:
    file: the shard's file name.
    num_clips: records written (a video split into segments counts one per
      segment).
    num_frames: frames of all its records.
    num_videos: videos of its job (written or skipped).
    sha256: hex sha256 of the shard file.
    size: its size in bytes.
    label_indices: the distinct label indices of its clips, sorted.
    skipped: `(video, reason)` of each video left out, sorted.
    videos: `(video, decoder, segments, frames)` of each video written, in
      shard order: the decoder that read it ('opencv' or 'pyav'), its
      records and their frames.
  """
  file: str
  num_clips: int
  num_frames: int
  num_videos: int
  sha256: str
  size: int
  label_indices: tuple[int, ...]
  skipped: tuple[tuple[str, str], ...]
  videos: tuple[tuple[str, str, int, int], ...]

  def to_json(self) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @classmethod
  def from_json(cls, entry: dict[str, Any]) -> 'ShardResult':
    """The result recorded as `entry`; KeyError or TypeError if it is not
    one."""
    values = {field.name: entry[field.name]
              for field in dataclasses.fields(cls)}
    values['label_indices'] = tuple(values['label_indices'])
    values['skipped'] = tuple(tuple(pair) for pair in values['skipped'])
    values['videos'] = tuple(tuple(video) for video in values['videos'])
    return cls(**values)


def prepare_shard(job: ShardJob) -> ShardResult:
  """Decodes a shard's videos and writes the shard; runs in a worker.

  Each video's frames are decoded, resized and JPEG-encoded one at a time
  (`video_decode.open_video`); only the JPEGs of the segment being cut are
  held, so a worker's memory does not grow with a video's length. A video
  that fails half-way (truncated, too short) is skipped whole: the shard is
  cut back to where its records began.

  Its temporaries, `job_temporaries(job)`, must be recorded before it runs.

  Returns:
    What the shard holds, also written to `output_dir/.prepare/<file>.json`
    once the shard is in place.
  """
  final = os.path.join(job.output_dir, job.file)
  skipped, written = [], []
  with files.replacing(final, job.token) as temporary, open(
      temporary, 'wb') as f:
    for name, label, index in job.videos:
      start = f.tell()
      try:
        written.append(_write_video(job, f, name, label, index))
      except video_decode.VideoDecodeError as e:
        f.seek(start)
        f.truncate()
        skipped.append((name, e.reason))
    f.flush()
    os.fsync(f.fileno())
  left_out = {name for name, _ in skipped}
  result = ShardResult(
      file=job.file, num_clips=sum(v[2] for v in written),
      num_frames=sum(v[3] for v in written),
      num_videos=len(job.videos), sha256=files.sha256(final),
      size=os.path.getsize(final),
      label_indices=tuple(sorted({int(i) for n, _, i in job.videos
                                  if n not in left_out})),
      skipped=tuple(sorted(skipped)), videos=tuple(written))
  files.write_atomically(os.path.join(job.output_dir, _record_name(job.file)),
                         files.json_text(result.to_json()), job.token)
  return result


def segment_frames(max_seconds: Optional[float], fps: float,
                   min_frames: int) -> Optional[int]:
  """Frames of a full segment: `max_seconds` at `fps`, at least `min_frames`.

  Args:
    max_seconds: the longest record in seconds; None: no limit.
    fps: the rate of the kept frames; 0.0 (unknown) counts as
      `ASSUMED_FPS`.
    min_frames: the fewest frames of a record.

  Returns:
    The frame count, or None for no limit.
  """
  if not max_seconds:
    return None
  return max(min_frames, round(max_seconds * (fps or ASSUMED_FPS)))


class SegmentCutter:
  """Cuts a video's frames, as they come, into records of `length` frames.

  A segment is written once the next one holds `min_frames` frames, so
  that a last remainder shorter than `min_frames` joins the segment before
  it instead of becoming a record too short to sample (no frame is lost:
  the last record has `length` to `length + min_frames - 1` frames). At most
  `length + min_frames` frames are held.

  Args:
    write: called with `(segment index, frames)` for each record, in order.
    length: frames of a full segment (at least `min_frames`); None: one
      record for the whole video.
    min_frames: the fewest frames of a record.
  """

  def __init__(self, write: Callable[[int, list], None],
               length: Optional[int], min_frames: int):
    self._write = write
    self._length = length
    self._min_frames = min_frames
    self._full = None  # a full segment not written yet
    self._current = []
    self.segments = 0
    self.frames = 0

  def add(self, frame) -> None:
    """Adds the next frame."""
    self._current.append(frame)
    if self._full is not None and len(self._current) >= self._min_frames:
      self._emit(self._full)
      self._full = None
    if len(self._current) == self._length:
      self._full, self._current = self._current, []

  def finish(self) -> None:
    """Writes what is held: the last segment, with a short remainder."""
    last = (self._full or []) + self._current
    self._full, self._current = None, []
    if last:
      self._emit(last)

  def _emit(self, frames: list) -> None:
    self._write(self.segments, frames)
    self.segments += 1
    self.frames += len(frames)


def _write_video(job: ShardJob, f, name: str, label: str,
                 index: int) -> tuple[str, str, int, int]:
  """Writes the records of one video to `f`.

  Returns:
    `(name, decoder, segments, frames)`.

  Raises:
    VideoDecodeError: the video cannot be used; records of it may have
      been written already (the caller cuts them off).
  """
  quality = [cv2.IMWRITE_JPEG_QUALITY, job.jpeg_quality]

  def write(segment: int, jpegs: list) -> None:
    tfrecord_writer.write_sequence_example(
        f, tfrecord_writer.sequence_example_pieces(index, label, name, jpegs,
                                                   segment=segment))

  with _opened(job, name) as stream:
    cutter = SegmentCutter(
        write, segment_frames(job.max_seconds, stream.fps, job.min_frames),
        job.min_frames)
    for frame in stream:
      cutter.add(cv2.imencode('.jpg', frame[..., ::-1], quality)[1].tobytes())
    cutter.finish()
  return name, stream.decoder, cutter.segments, cutter.frames


def job_temporaries(job: ShardJob) -> list[str]:
  """The temporaries `prepare_shard(job)` may create, relative to output."""
  paths = [files.temporary_name(job.file, job.token),
           files.temporary_name(_record_name(job.file), job.token)]
  if job.source == 'ucf101':
    paths.append(_fetch_folder(job))
  return paths


def _record_name(name):
  return os.path.join(STATE_DIR, name + '.json')


def _fetch_folder(job: ShardJob) -> str:
  """Folder, relative to output, where the job's UCF101 videos land."""
  return files.temporary_name(
      os.path.join(STATE_DIR, f'fetch-{job.file}'), job.token)


def finished_record(output_dir: str, name: str) -> Optional[ShardResult]:
  """The record of a complete shard `name`, or None to (re)do it."""
  record_path = os.path.join(output_dir, _record_name(name))
  shard_path = os.path.join(output_dir, name)
  if not (os.path.exists(record_path) and os.path.exists(shard_path)):
    return None
  try:
    with open(record_path, encoding='utf-8') as f:
      record = ShardResult.from_json(json.load(f))
  except (ValueError, KeyError, TypeError):
    logging.warning('Shard %s has no readable record; redoing it.', name)
    return None
  if record.sha256 != files.sha256(shard_path):
    logging.warning('Shard %s does not match its record; redoing it.', name)
    return None
  return record


@contextlib.contextmanager
def _opened(job: ShardJob, name: str) -> Iterator[video_decode.VideoStream]:
  """The job's video `name`, opened (a UCF101 member fetched first).

  A video whose short side exceeds `job.short_side` px is downscaled to it
  (aspect kept); a smaller one keeps its size: upscaling adds bytes, not
  information.
  """
  options = dict(fps=job.fps, short_side=job.short_side,
                 min_frames=job.min_frames)
  if job.source != 'ucf101':
    with video_decode.open_video(os.path.join(job.root, name),
                                 **options) as stream:
      yield stream
    return
  folder = os.path.join(job.output_dir, _fetch_folder(job))
  path = os.path.join(folder, os.path.basename(name))
  try:
    _archive(job.root).fetch(name, path)
    with video_decode.open_video(path, **options) as stream:
      yield stream
  finally:
    shutil.rmtree(folder, ignore_errors=True)


_ARCHIVES = {}


def _archive(url):
  """One `Ucf101Archive` per process and URL, opened on first use."""
  if url not in _ARCHIVES:
    _ARCHIVES[url] = sources.Ucf101Archive(url)
  return _ARCHIVES[url]


def close_archives() -> None:
  """Closes the UCF101 archives this process opened."""
  while _ARCHIVES:
    _ARCHIVES.popitem()[1].close()


# -------------------------------------------------------------- temporaries


def new_token() -> str:
  """A token unique to this run: `<pid>-<16 random hex digits>`."""
  return f'{os.getpid()}-{secrets.token_hex(8)}'


def record_temporaries(output_dir: str, paths: list[str]) -> None:
  """Records temporaries (relative to `output_dir`) before they are created.

  Appends to `.prepare/temporaries` and fsyncs, so that `remove_recorded`
  finds them even if this run is killed. Only the holder of the
  `output_dir` lock may call it.
  """
  lines = ''.join(json.dumps(p, ensure_ascii=False) + '\n' for p in paths)
  with open(os.path.join(output_dir, STATE_DIR, JOURNAL_NAME), 'a',
            encoding='utf-8') as f:
    f.write(lines)
    f.flush()
    os.fsync(f.fileno())


def remove_recorded(output_dir: str) -> list[str]:
  """Removes the recorded temporaries that exist, then the record.

  Only paths inside `output_dir` whose name ends in `.tmp-<token>` are
  removed; a line cut short by a kill is ignored (its path was never
  created: recording comes first).

  Returns:
    The removed paths, relative to `output_dir`.
  """
  journal = os.path.join(output_dir, STATE_DIR, JOURNAL_NAME)
  try:
    with open(journal, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  removed = []
  for line in lines:
    try:
      relative = json.loads(line)
    except ValueError:
      continue
    if not _is_temporary(relative):
      continue
    path = os.path.join(output_dir, relative)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)
    else:
      continue
    removed.append(relative)
  os.remove(journal)
  return removed


def _is_temporary(relative) -> bool:
  """Whether a recorded path is one this module names, inside output_dir."""
  if not isinstance(relative, str) or os.path.isabs(relative):
    return False
  parts = os.path.normpath(relative).split(os.sep)
  return '..' not in parts and bool(_TEMPORARY.search(parts[-1]))
