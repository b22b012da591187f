"""The decoders `video_decode` reads a video with: OpenCV, then PyAV.

`open_with(decoder, path)` opens a video with one of `DECODERS` and decodes
its first frame, or raises `VideoDecodeError` saying why it cannot:

  'opencv'  `cv2.VideoCapture` with its bundled FFmpeg: AVI/XviD, H.264,
            HEVC, VP9, MPEG-2, FFV1, ...; frames turned upright by
            `CAP_PROP_ORIENTATION_AUTO`.
  'pyav'    PyAV (`av`), whose FFmpeg has dav1d: what OpenCV's FFmpeg has no
            decoder for, AV1 above all (what YouTube serves); frames turned
            upright by their display matrix (`VideoFrame.rotation`).

When a decoder gets no frame, FFmpeg's demuxer (through PyAV, without
decoding) tells why: no container it reads ('cannot open'), no video stream
('no video stream', an audio file), no packet ('no frames'), or packets
OpenCV decodes nothing of ('codec av1: no decoder').
"""

import dataclasses
import math
import os
from typing import Callable, Iterator, Tuple

from absl import logging
import av
import cv2
import numpy as np

# The decoders, in the order they are tried.
DECODERS = ('opencv', 'pyav')
# OpenCV's FFmpeg logs three errors for each AV1 video it cannot decode
# ("Your platform doesn't support hardware accelerated AV1 decoding"), which
# PyAV then decodes, and the reasons of the videos skipped say what failed:
# quiet (AV_LOG_QUIET) unless the user set a level. Read at the first capture.
os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')


class VideoDecodeError(ValueError):
  """A video that cannot be used; `reason` says why in a few words.

  Attributes:
    path: The video path, as given.
    reason: Short machine-readable cause, e.g. 'empty file' or
      'too short: 3 frames < 8' (`video_decode`'s docstring lists them).
  """

  def __init__(self, path: str, reason: str, detail: str = ''):
    self.path = str(path)
    self.reason = reason
    message = f'Cannot decode video {self.path!r}: {reason}'
    if detail:
      message += f' ({detail})'
    super().__init__(message)


@dataclasses.dataclass
class Opened:
  """A video one decoder opened and decoded a first frame of.

  Attributes:
    decoder: 'opencv' or 'pyav'.
    frames: upright RGB frames `(height, width, 3)`, the first included;
      closing it releases the decoder.
    source_fps: announced rate, 0.0 if unknown.
    announced: announced frame count, 0 if unknown.
    size: `(height, width)` of the first frame.
    release: releases the decoder (again: does nothing); for a video closed
      before its frames are read.
  """
  decoder: str
  frames: Iterator[np.ndarray]
  source_fps: float
  announced: int
  size: Tuple[int, int]
  release: Callable[[], None]


def open_with(decoder: str, path: str) -> Opened:
  """Opens `path` with `decoder` (one of `DECODERS`) and decodes its
  first frame.

  Raises:
    VideoDecodeError: the decoder gets no frame; `reason` says why.
  """
  return _OPENERS[decoder](path)


# ------------------------------------------------------------------ OpenCV


def _open_opencv(path: str) -> Opened:
  """Opens `path` with OpenCV and decodes its first frame."""
  capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
  opened = capture.isOpened()
  first = None
  if opened:
    # Turn frames upright as the display matrix says (OpenCV's default;
    # set so that a change of default cannot turn it off).
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, first = capture.read()
    first = first if ok else None
  if first is None:
    capture.release()
    reason, detail = _diagnose(path, 'opencv')
    raise VideoDecodeError(path, reason, f'OpenCV: {detail}')

  def frames() -> Iterator[np.ndarray]:
    frame = first
    try:
      while frame is not None:
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        ok, frame = capture.read()
        frame = frame if ok else None
    finally:
      capture.release()

  return Opened(
      decoder='opencv', frames=frames(),
      source_fps=_finite_positive(capture.get(cv2.CAP_PROP_FPS)),
      announced=int(_finite_positive(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
      size=(int(first.shape[0]), int(first.shape[1])),
      release=capture.release)


def _diagnose(path: str, decoder: str) -> Tuple[str, str]:
  """`(reason, detail)` for a file `decoder` got no frame of, from what
  FFmpeg's demuxer (PyAV, no decoding) finds in it.

  Packets that give no frame mean that OpenCV has no decoder for their
  codec; PyAV, which opens only a codec it has a decoder for, found them
  corrupt.
  """
  try:
    container = av.open(path)
  except (av.FFmpegError, UnicodeDecodeError) as error:
    return 'cannot open', f'not a container FFmpeg reads: {error}'
  with container:
    if not container.streams.video:
      return 'no video stream', _stream_kinds(container)
    stream = container.streams.video[0]
    try:
      packet = next((p for p in container.demux(stream) if p.size), None)
    except av.FFmpegError as error:
      return 'cannot open', f'reading its first packet: {error}'
    if packet is None:
      return 'no frames', 'its video stream holds no packet'
    if decoder == 'pyav':
      return 'no frames', 'no frame decodes from its packets'
    return (f'codec {_codec_name(stream)}: no decoder',
            'no frame decodes from its packets')


# -------------------------------------------------------------------- PyAV


def _open_pyav(path: str) -> Opened:
  """Opens `path` with PyAV and decodes its first frame."""
  try:
    container = av.open(path)
  except (av.FFmpegError, UnicodeDecodeError) as error:
    raise VideoDecodeError(path, 'cannot open',
                           f'not a container FFmpeg reads: {error}') from None
  try:
    if not container.streams.video:
      raise VideoDecodeError(path, 'no video stream',
                             _stream_kinds(container))
    stream = container.streams.video[0]
    codec = _codec_name(stream)
    if stream.codec_context is None:
      raise VideoDecodeError(path, f'codec {codec}: no decoder',
                             'PyAV\'s FFmpeg has none')
    stream.codec_context.thread_type = 'AUTO'
    frames = _pyav_frames(container, stream)
    first = next(frames, None)
    if first is None:
      reason, detail = _diagnose(path, 'pyav')
      raise VideoDecodeError(path, reason, f'PyAV: {detail}')
  except BaseException:
    container.close()
    raise
  rate = stream.guessed_rate or stream.average_rate
  source_fps = _finite_positive(float(rate)) if rate else 0.0
  announced = stream.frames
  if not announced and source_fps and container.duration:
    # As OpenCV estimates it without a frame count: duration x rate.
    announced = int(container.duration / av.time_base * source_fps + 0.5)

  def all_frames() -> Iterator[np.ndarray]:
    try:
      yield first
      yield from frames
    finally:
      frames.close()

  return Opened(decoder='pyav', frames=all_frames(), source_fps=source_fps,
                 announced=int(announced),
                 size=(int(first.shape[0]), int(first.shape[1])),
                 release=container.close)


def _pyav_frames(container, stream) -> Iterator[np.ndarray]:
  """Upright RGB frames of `stream`; a packet that does not decode is
  passed over (as `ffmpeg` does), a read error ends the video."""
  try:
    packets = container.demux(stream)
    while True:
      try:
        packet = next(packets)
      except StopIteration:
        return
      except av.FFmpegError as error:
        logging.warning('%s: reading stopped: %s', container.name, error)
        return
      try:
        decoded = packet.decode()
      except av.FFmpegError as error:
        logging.warning('%s: a packet does not decode: %s', container.name,
                        error)
        continue
      for frame in decoded:
        rgb = frame.to_ndarray(format='rgb24')
        turns = round((frame.rotation or 0) / 90) % 4
        # rotation: degrees counterclockwise, as np.rot90 turns.
        yield np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
  finally:
    container.close()


def _codec_name(stream) -> str:
  """The codec of a stream as FFmpeg names it, e.g. 'av1' (not the name of
  a decoder of it, such as 'libdav1d')."""
  context = stream.codec_context
  if context is not None:
    return context.codec.canonical_name
  return 'unknown'


def _stream_kinds(container) -> str:
  """'streams: audio (aac)' for a message."""
  kinds = [f'{s.type} ({_codec_name(s)})' for s in container.streams]
  return f'streams: {", ".join(kinds) or "none"}'


_OPENERS: dict[str, Callable[[str], Opened]] = {
    'opencv': _open_opencv, 'pyav': _open_pyav}


def _finite_positive(value: float) -> float:
  """`value` as a float, or 0.0 when it is NaN, infinite or not positive."""
  value = float(value)
  return value if math.isfinite(value) and value > 0 else 0.0

