"""Decodes one video file into RGB frames, once, for `movinet-prepare`.

Decoding goes through `cv2.VideoCapture` (FFmpeg backend). Every failure a
preparation run should skip and report, rather than crash on, is raised as a
`VideoDecodeError` whose `reason` is a short machine-readable string:

  'not found'                   the path does not exist
  'empty file'                  the file has zero bytes
  'cannot open'                 unreadable, or not a video container
  'no frames'                   opened, but not one frame decoded
  'truncated'                   fewer than half the announced frames decoded
                                (with at least half, the frames that decoded
                                are kept, less the last, which may be partial)
  'too short: 3 frames < 8'     fewer than `min_frames` frames were kept
"""

import dataclasses
import math
import os
from typing import Optional, Tuple

from absl import logging
import cv2
import numpy as np

# A video is truncated when fewer than this fraction of the frames its
# container announces decode; above it, the frames that did decode are kept.
TRUNCATED_FRACTION = 0.5


class VideoDecodeError(ValueError):
  """A video that cannot be used; `reason` says why in a few words.

  Attributes:
    path: The video path, as given.
    reason: Short machine-readable cause, e.g. 'empty file' or
      'too short: 3 frames < 8' (see the module docstring for the list).
  """

  def __init__(self, path: str, reason: str, detail: str = ''):
    self.path = str(path)
    self.reason = reason
    message = f'Cannot decode video {self.path!r}: {reason}'
    if detail:
      message += f' ({detail})'
    super().__init__(message)


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  """The frames of one video and the rates they came at.

  Attributes:
    frames: uint8 RGB array `(frames, height, width, 3)`.
    source_fps: Frame rate announced by the container, frames per second;
      0.0 when the container does not say.
    fps: Frame rate of `frames`, frames per second: the requested `fps` after
      temporal reduction, else `source_fps` (0.0 when unknown).
    source_size: `(height, width)` of the frames in the file, pixels.
  """
  frames: np.ndarray
  source_fps: float
  fps: float
  source_size: Tuple[int, int]

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


def decode_video(path: str,
                 fps: Optional[float] = None,
                 short_side: Optional[int] = None,
                 min_frames: int = 1,
                 upscale: bool = False) -> DecodedVideo:
  """Decodes a video file into RGB frames.

  Args:
    path: Video file path (spaces and non-ASCII characters are fine).
    fps: Keep frames at this rate, frames per second, choosing for each output
      timestamp `k / fps` the source frame nearest to it. None, or a rate at
      or above the source rate, keeps every frame. When the source rate is
      unknown every frame is kept and `DecodedVideo.fps` is 0.0.
    short_side: The largest short side, in pixels: larger frames are
      downscaled to it, keeping the aspect ratio (the other side rounded to
      the nearest pixel, at least 1); smaller ones keep their size (unless
      `upscale`). None keeps the source size.
    min_frames: Fewest frames, after temporal reduction, a usable video has.
    upscale: Also enlarge frames whose short side is below `short_side`,
      so that it is exactly `short_side`.

  Returns:
    A `DecodedVideo` with `frames` of shape `(frames, height, width, 3)`.

  Raises:
    VideoDecodeError: the file is missing, empty, not a readable video,
      truncated, or too short; `reason` says which.
    ValueError: an argument is out of range.
  """
  _check_arguments(fps, short_side, min_frames)
  path = os.fspath(path)
  if not os.path.exists(path):
    raise VideoDecodeError(path, 'not found',
                           'check the path or the source root')
  if os.path.getsize(path) == 0:
    raise VideoDecodeError(path, 'empty file')
  if not os.access(path, os.R_OK):
    raise VideoDecodeError(path, 'cannot open', 'no read permission')

  capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
  try:
    if not capture.isOpened():
      raise VideoDecodeError(path, 'cannot open',
                             'not a video container OpenCV/FFmpeg can read')
    source_fps = _finite_positive(capture.get(cv2.CAP_PROP_FPS))
    announced = int(_finite_positive(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    keep_fps = fps if fps and source_fps and fps < source_fps else None
    kept, kept_indices, decoded, source_size = _read_frames(
        capture, path, source_fps, keep_fps, short_side, upscale)
  finally:
    capture.release()

  if decoded == 0:
    raise VideoDecodeError(path, 'no frames')
  if announced and decoded < TRUNCATED_FRACTION * announced:
    raise VideoDecodeError(
        path, 'truncated',
        f'{decoded} of {announced} announced frames decoded')
  if announced and decoded < announced:
    # FFmpeg decodes what it has of the frame the file stops in, so the last
    # frame of an early-ending stream is often part garbage: drop it.
    if kept_indices and kept_indices[-1] == decoded - 1:
      kept.pop()
    logging.warning('%s: %d of %d announced frames decoded; keeping %d, '
                    'without the last, which may be partial.', path, decoded,
                    announced, len(kept))
  if len(kept) < min_frames:
    raise VideoDecodeError(
        path, f'too short: {len(kept)} frames < {min_frames}',
        'lower min_frames or fps, or drop the video')
  if not source_fps:
    logging.warning('%s: the container gives no frame rate; kept all %d '
                    'frames and report fps=0.', path, decoded)
  return DecodedVideo(frames=np.stack(kept),
                      source_fps=source_fps,
                      fps=float(keep_fps or source_fps),
                      source_size=source_size)


def resized_shape(height: int, width: int, short_side: int) -> Tuple[int, int]:
  """`(height, width)` with the shorter side `short_side`, aspect kept.

  The longer side is rounded half up to the nearest pixel, at least 1.
  """
  scale = short_side / min(height, width)
  if height <= width:
    return short_side, max(1, math.floor(width * scale + 0.5))
  return max(1, math.floor(height * scale + 0.5)), short_side


def _read_frames(capture, path, source_fps, keep_fps, short_side, upscale):
  """Reads frames until the stream ends, keeping the ones `keep_fps` wants.

  Returns:
    `(kept, kept_indices, decoded, source_size)`: the kept RGB frames, their
    source indices, the number of frames decoded, and the source
    `(height, width)` ((0, 0) when nothing decoded).
  """
  kept = []
  kept_indices = []
  decoded = 0
  source_size = (0, 0)
  next_output = 0
  while True:
    ok, frame_bgr = capture.read()
    if not ok or frame_bgr is None:
      break
    index = decoded
    decoded += 1
    if index == 0:
      source_size = (int(frame_bgr.shape[0]), int(frame_bgr.shape[1]))
    elif frame_bgr.shape[:2] != source_size:
      raise VideoDecodeError(
          path, 'frame size changes',
          f'frame {index} is {frame_bgr.shape[1]}x{frame_bgr.shape[0]} after '
          f'{source_size[1]}x{source_size[0]}')
    if keep_fps:
      # The output timestamp k / keep_fps lands nearest source frame
      # floor(k * source_fps / keep_fps + 0.5); keep_fps < source_fps makes
      # these indices strictly increasing, so one comparison per frame works.
      wanted = math.floor(next_output * source_fps / keep_fps + 0.5)
      if index != wanted:
        continue
      next_output += 1
    kept.append(_to_rgb(frame_bgr, short_side, upscale))
    kept_indices.append(index)
  return kept, kept_indices, decoded, source_size


def _to_rgb(frame_bgr: np.ndarray, short_side: Optional[int],
            upscale: bool) -> np.ndarray:
  """BGR `(height, width, 3)` -> RGB, resized to `short_side` if given."""
  frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
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


def _finite_positive(value: float) -> float:
  """`value` as a float, or 0.0 when it is NaN, infinite or not positive."""
  value = float(value)
  return value if math.isfinite(value) and value > 0 else 0.0


def _check_arguments(fps, short_side, min_frames):
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
