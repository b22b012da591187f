"""Decodes one video file into RGB frames, as a stream, for `movinet-prepare`.

Two decoders read a video (`video_decoders`): OpenCV, and PyAV when OpenCV
cannot open the file or decodes no frame of it (AV1 above all, what YouTube
serves, for which OpenCV's FFmpeg has no decoder). Both turn the frames
upright as a display matrix says (phone video shot sideways).

`open_video` returns a `VideoStream`, whose frames are decoded, reduced to
the requested rate and resized one at a time as they are read: memory does
not grow with the video's length. `decode_video` stacks them all, for short
videos and tests.

Every failure a preparation run should skip and report, rather than crash
on, is raised as a `VideoDecodeError` whose `reason` is a short
machine-readable string:

  'not found'                  the path does not exist
  'empty file'                 the file has zero bytes
  'cannot open'                unreadable, or not a container FFmpeg reads
  'no video stream'            a container without video (e.g. audio only)
  'codec av1: no decoder'      packets of a codec neither decoder decodes
  'no frames'                  a video stream without a frame
  'frame size changes'         a frame of another size than the first
  'truncated after frame 37'   the file ends after 37 frames, fewer than
                               half those announced (with at least half,
                               the frames that decoded are kept, less the
                               last, which may be partial)
  'too short: 3 frames < 8'    fewer than `min_frames` frames were kept

A stream raises the last three after it has yielded frames: a reader that
kept some (a shard's earlier segments) discards them.
"""

import dataclasses
import math
import os
from typing import Iterator, Optional, Tuple

from absl import logging
import cv2
import numpy as np

from trainer.data import video_decoders
from trainer.data.video_decoders import DECODERS
from trainer.data.video_decoders import VideoDecodeError

# A video is truncated when fewer than this fraction of the frames its
# container announces decode; above it, the frames that did decode are kept.
TRUNCATED_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  """The frames of one video, the rates they came at and their decoder.

  Attributes:
    frames: uint8 RGB array `(frames, height, width, 3)`.
    source_fps: Frame rate announced by the container, frames per second;
      0.0 when the container does not say.
    fps: Frame rate of `frames`, frames per second: the requested `fps` after
      temporal reduction, else `source_fps` (0.0 when unknown).
    source_size: `(height, width)` of the frames as displayed (rotated
      upright), before resizing, pixels.
    decoder: The decoder that read them, one of `DECODERS`.
  """
  frames: np.ndarray
  source_fps: float
  fps: float
  source_size: Tuple[int, int]
  decoder: str

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


class VideoStream:
  """An opened video whose frames are decoded as they are read.

  Iterating it (once) yields uint8 RGB frames `(height, width, 3)` in time
  order, at `fps` and resized as `open_video` was asked. At the end of the
  video it raises `VideoDecodeError` if the file was truncated early
  ('truncated after frame N') or too few frames were kept
  ('too short: ...'); a frame of another size raises at once. Use it as a
  context manager (or call `close`) to release the decoder early.

  Attributes:
    path: the video file.
    decoder: the decoder reading it, one of `DECODERS`.
    source_fps: the container's rate, frames per second; 0.0 if unknown.
    fps: the rate of the frames yielded: the requested rate if below
      `source_fps`, else `source_fps`.
    source_size: `(height, width)` of the upright frames before resizing.
    num_frames: frames yielded so far.
  """

  def __init__(self, path: str, opened: video_decoders.Opened,
               fps: Optional[float], short_side: Optional[int],
               min_frames: int, upscale: bool):
    self.path = path
    self.decoder = opened.decoder
    self.source_fps = opened.source_fps
    self.source_size = opened.size
    self._keep_fps = (fps if fps and self.source_fps and fps < self.source_fps
                      else None)
    self.fps = float(self._keep_fps or self.source_fps)
    self.num_frames = 0
    self._opened = opened
    self._resize = lambda frame: _resized(frame, short_side, upscale)
    self._min_frames = min_frames
    self._started = False

  def __enter__(self) -> 'VideoStream':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Releases the decoder; the frames not read yet are not decoded."""
    self._opened.frames.close()
    self._opened.release()

  def __iter__(self) -> Iterator[np.ndarray]:
    if self._started:
      raise RuntimeError(f'The frames of {self.path!r} were read already; '
                         'open the video again to read them again.')
    self._started = True
    return self._frames()

  def _frames(self) -> Iterator[np.ndarray]:
    """Decodes, picks, resizes; holds back the last kept frame until the
    next one shows it is whole."""
    held = None  # (source index, resized frame) of the last kept frame
    decoded = next_output = 0
    try:
      for index, frame in enumerate(self._opened.frames):
        decoded = index + 1
        if frame.shape[:2] != self.source_size:
          raise VideoDecodeError(
              self.path, 'frame size changes',
              f'frame {index} is {frame.shape[1]}x{frame.shape[0]} after '
              f'{self.source_size[1]}x{self.source_size[0]}')
        if self._keep_fps:
          # The output timestamp k / keep_fps lands nearest source frame
          # floor(k * source_fps / keep_fps + 0.5); keep_fps < source_fps
          # makes these strictly increasing: one comparison per frame.
          wanted = math.floor(
              next_output * self.source_fps / self._keep_fps + 0.5)
          if index != wanted:
            continue
          next_output += 1
        if held is not None:
          self.num_frames += 1
          yield held[1]
        held = (index, self._resize(frame))
    finally:
      self.close()
    announced = self._opened.announced
    if announced and decoded < TRUNCATED_FRACTION * announced:
      raise VideoDecodeError(
          self.path, f'truncated after frame {decoded}',
          f'{decoded} of {announced} announced frames decoded')
    if announced and decoded < announced and held[0] == decoded - 1:
      # FFmpeg decodes what it has of the frame the file stops in, so the
      # last frame of an early-ending stream is often part garbage: drop it.
      logging.warning('%s: %d of %d announced frames decoded; keeping %d, '
                      'without the last, which may be partial.', self.path,
                      decoded, announced, self.num_frames)
    else:
      self.num_frames += 1
      yield held[1]
    if self.num_frames < self._min_frames:
      raise VideoDecodeError(
          self.path, f'too short: {self.num_frames} frames < '
          f'{self._min_frames}', 'lower min_frames or fps, or drop the video')
    if not self.source_fps:
      logging.warning('%s: the container gives no frame rate; kept all %d '
                      'frames and report fps=0.', self.path, decoded)


def open_video(path: str,
               fps: Optional[float] = None,
               short_side: Optional[int] = None,
               min_frames: int = 1,
               upscale: bool = False,
               decoders: Tuple[str, ...] = DECODERS) -> VideoStream:
  """Opens a video with the first decoder that decodes a frame of it.

  Args:
    path: Video file path (spaces and non-ASCII characters are fine).
    fps: Keep frames at this rate, frames per second, choosing for each output
      timestamp `k / fps` the source frame nearest to it. None, or a rate at
      or above the source rate, keeps every frame. When the source rate is
      unknown every frame is kept and `VideoStream.fps` is 0.0.
    short_side: The largest short side, in pixels: larger frames are
      downscaled to it, keeping the aspect ratio (the other side rounded to
      the nearest pixel, at least 1); smaller ones keep their size (unless
      `upscale`). None keeps the source size.
    min_frames: Fewest frames, after temporal reduction, a usable video has.
    upscale: Also enlarge frames whose short side is below `short_side`,
      so that it is exactly `short_side`.
    decoders: The decoders to try, in order, from `DECODERS`.

  Returns:
    A `VideoStream`, its first frame decoded.

  Raises:
    VideoDecodeError: the file is missing, empty, not a readable video, has
      no video stream, or no decoder tried decodes a frame of it; `reason`
      says which (that of the last decoder tried).
    ValueError: an argument is out of range.
  """
  _check_arguments(fps, short_side, min_frames, decoders)
  path = os.fspath(path)
  if not os.path.exists(path):
    raise VideoDecodeError(path, 'not found',
                           'check the path or the source root')
  if os.path.getsize(path) == 0:
    raise VideoDecodeError(path, 'empty file')
  if not os.access(path, os.R_OK):
    raise VideoDecodeError(path, 'cannot open', 'no read permission')
  failure = None
  for decoder in decoders:
    try:
      opened = video_decoders.open_with(decoder, path)
    except VideoDecodeError as error:
      failure = error
      continue
    if failure is not None:
      logging.info('%s: read by %s (%s: %s).', path, decoder, decoders[0],
                   failure.reason)
    return VideoStream(path, opened, fps, short_side, min_frames, upscale)
  raise failure


def decode_video(path: str,
                 fps: Optional[float] = None,
                 short_side: Optional[int] = None,
                 min_frames: int = 1,
                 upscale: bool = False,
                 decoders: Tuple[str, ...] = DECODERS) -> DecodedVideo:
  """Decodes a whole video into RGB frames; see `open_video`.

  Holds every frame: for a long video, iterate `open_video` instead.

  Returns:
    A `DecodedVideo` with `frames` of shape `(frames, height, width, 3)`.

  Raises:
    VideoDecodeError: as `open_video`, and for a truncated or too short
      video.
    ValueError: an argument is out of range.
  """
  with open_video(path, fps, short_side, min_frames, upscale,
                  decoders) as stream:
    frames = np.stack(list(stream))
  return DecodedVideo(frames=frames, source_fps=stream.source_fps,
                      fps=stream.fps, source_size=stream.source_size,
                      decoder=stream.decoder)


def resized_shape(height: int, width: int, short_side: int) -> Tuple[int, int]:
  """`(height, width)` with the shorter side `short_side`, aspect kept.

  The longer side is rounded half up to the nearest pixel, at least 1.
  """
  scale = short_side / min(height, width)
  if height <= width:
    return short_side, max(1, math.floor(width * scale + 0.5))
  return max(1, math.floor(height * scale + 0.5)), short_side

# ---------------------------------------------------------------- frames


def _resized(frame: np.ndarray, short_side: Optional[int],
             upscale: bool) -> np.ndarray:
  """RGB `(height, width, 3)` resized to `short_side` if given."""
  if short_side is None:
    return frame
  height, width = frame.shape[:2]
  if not upscale and min(height, width) <= short_side:
    return frame
  new_height, new_width = resized_shape(height, width, short_side)
  if (new_height, new_width) == (height, width):
    return frame
  shrinking = new_height * new_width < height * width
  interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
  return cv2.resize(frame, (new_width, new_height), interpolation=interpolation)


def _check_arguments(fps, short_side, min_frames, decoders):
  """Raises ValueError naming the argument, value, allowed range and fix."""
  if fps is not None and not (isinstance(fps, (int, float)) and
                              math.isfinite(fps) and fps > 0):
    raise ValueError(f'decode_video: fps={fps!r} is not allowed; pass a '
                     'positive number of frames per second, or None to keep '
                     'the source rate.')
  if short_side is not None and not (isinstance(short_side, (int, np.integer))
                                     and short_side >= 1):
    raise ValueError(f'decode_video: short_side={short_side!r} is not allowed; '
                     'pass a positive int of pixels, or None to keep the '
                     'source size.')
  if not (isinstance(min_frames, (int, np.integer)) and min_frames >= 1):
    raise ValueError(f'decode_video: min_frames={min_frames!r} is not allowed; '
                     'pass an int >= 1.')
  if (isinstance(decoders, str) or not decoders
      or not set(decoders) <= set(DECODERS)):
    raise ValueError(f'decode_video: decoders={decoders!r} is not allowed; '
                     f'pass a non-empty tuple of {", ".join(DECODERS)}.')
