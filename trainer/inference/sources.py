"""Videos to classify: files, folders of them, http(s) URLs and cameras.

`expand_inputs` turns what the user named into `VideoInput`s (a folder
into the videos inside it, sorted); `open_video` opens one as a `Video`,
whose `frames()` decodes RGB frames lazily as preparation does
(`video_decode`: OpenCV, or PyAV for what OpenCV cannot decode, such as
AV1), a camera with `cv2.VideoCapture`. A URL is first downloaded, streaming,
into a temporary file removed afterwards. Whatever makes one input
unusable (missing, unreadable, a URL that does not answer, a camera that
cannot be opened) is an `InputError` naming it, so the others can go on.
"""

import contextlib
import dataclasses
import os
import re
import tempfile
from typing import Iterator, Optional
import urllib.parse

from absl import logging
import cv2
import numpy as np
import requests
import tqdm

from trainer import files
from trainer.data import video_decode

# File name endings taken for videos when a folder is listed; other files
# are skipped (and logged).
VIDEO_EXTENSIONS = ('.avi', '.mp4', '.m4v', '.mov', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp', '.ogv')
# Seconds to connect to a URL, and to wait between two bytes of it.
URL_TIMEOUT = (10.0, 60.0)
_CHUNK_BYTES = 1 << 20


class InputError(ValueError):
  """One input that cannot be classified; the message names it."""


@dataclasses.dataclass(frozen=True)
class VideoInput:
  """One video to classify.

  Attributes:
    name: how it is named in output: the path, URL or `camera:N`.
    location: the path or URL, or the camera's index.
  """
  name: str
  location: object

  @property
  def stem(self) -> str:
    """A short name for files made from it (`clip` of `a/b/clip.mp4`)."""
    if isinstance(self.location, int):
      return f'camera{self.location}'
    path = urllib.parse.urlparse(self.name).path if is_url(self.name) else (
        self.name)
    return os.path.splitext(os.path.basename(path.rstrip('/')))[0] or 'video'


def is_url(name: str) -> bool:
  return name.startswith(('http://', 'https://'))


def _folder_videos(folder: str) -> list[VideoInput]:
  """The videos under `folder` (and its subfolders), sorted by path;
  hidden files and files of other extensions are skipped."""
  found, skipped = [], []
  for root, dirs, names in os.walk(folder):
    dirs[:] = [name for name in dirs if not name.startswith('.')]
    for name in names:
      path = os.path.join(root, name)
      if name.startswith('.'):
        continue
      if name.lower().endswith(VIDEO_EXTENSIONS):
        found.append(path)
      else:
        skipped.append(path)
  if skipped:
    logging.info('Skipped %d files of %s that are not videos by their '
                 'extension: %s', len(skipped), folder,
                 ', '.join(sorted(skipped)[:5]))
  return [VideoInput(path, path) for path in sorted(found)]


def expand_inputs(names, camera: Optional[int] = None) -> list[VideoInput]:
  """The videos `names` (paths, folders, URLs) and `camera` stand for.

  A folder gives the videos inside it, sorted (none: an input that will
  fail, named); anything else is taken as it is and checked when opened.
  """
  inputs = []
  for name in names:
    name = os.fspath(name)
    if not is_url(name) and os.path.isdir(name):
      videos = _folder_videos(name)
      inputs.extend(videos or [VideoInput(name, name)])
    else:
      inputs.append(VideoInput(name, name))
  if camera is not None:
    inputs.append(VideoInput(f'camera:{camera}', int(camera)))
  return inputs


class Video:
  """An opened video: its rate and frames.

  Attributes:
    name: the input's name.
    fps: frames per second the source announces; 0.0 if it does not say.
    is_camera: whether it is a live camera (which may never end).
  """

  def __init__(self, name: str, fps: float, frames: Iterator[np.ndarray],
               max_frames: Optional[int] = None, is_camera: bool = False):
    self.name = name
    self.fps = float(fps) if np.isfinite(fps) and fps > 0 else 0.0
    self.is_camera = is_camera
    self._frames = frames
    self._max_frames = max_frames

  def frames(self) -> Iterator[np.ndarray]:
    """Upright RGB uint8 frames `(height, width, 3)` until the source ends
    (or `max_frames`).

    Raises:
      InputError: not one frame decodes, or the file breaks off early
        (named, e.g. 'truncated after frame 37').
    """
    count = 0
    try:
      for frame in self._frames:
        count += 1
        yield frame
        if count == self._max_frames:  # not one frame more decoded
          break
    except video_decode.VideoDecodeError as error:
      raise InputError(f'{self.name}: {error.reason}.') from error
    if not count:
      raise InputError(f'{self.name}: no frames decode; is it a video?')


@contextlib.contextmanager
def _downloaded(url: str, timeout=URL_TIMEOUT) -> Iterator[str]:
  """Downloads `url` to a temporary file, removed when the block ends."""
  suffix = os.path.splitext(urllib.parse.urlparse(url).path)[1]
  with tempfile.TemporaryDirectory(prefix='movinet-classify-') as folder:
    path = os.path.join(folder, 'video' + suffix)
    try:
      with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        total = int(response.headers.get('Content-Length') or 0) or None
        with open(path, 'wb') as f, tqdm.tqdm(
            total=total, unit='B', unit_scale=True, desc=url,
            disable=None, leave=False) as progress:
          for chunk in response.iter_content(_CHUNK_BYTES):
            f.write(chunk)
            progress.update(len(chunk))
    except requests.RequestException as error:
      raise InputError(f'{url}: cannot download it ({_why(error)})'
                       ) from error
    yield path


def _why(error: requests.RequestException) -> str:
  """A few words on why a download failed."""
  if isinstance(error, requests.HTTPError) and error.response is not None:
    return f'HTTP {error.response.status_code} {error.response.reason}'
  if isinstance(error, requests.Timeout):
    return f'no answer within {URL_TIMEOUT[0]:g} s'
  found = re.search(r'\[Errno -?\d+\] [^"\')\]]+', str(error))
  return found.group(0) if found else files.reason(error)


def _silent_capture(*args):
  """`cv2.VideoCapture(*args)` without OpenCV's own warnings on stderr:
  a failure is reported once, as an `InputError`."""
  level = cv2.utils.logging.getLogLevel()
  cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
  try:
    return cv2.VideoCapture(*args)
  finally:
    cv2.utils.logging.setLogLevel(level)


def _camera_frames(capture) -> Iterator[np.ndarray]:
  while True:
    ok, frame = capture.read()
    if not ok or frame is None:
      return
    yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _open_camera(index: int, name: str, max_frames: Optional[int],
                 stack: contextlib.ExitStack) -> Video:
  capture = _silent_capture(index)
  if not capture.isOpened():
    raise InputError(f'{name}: the camera cannot be opened; check '
                     f'--camera={index} (0 is the first camera).')
  stack.callback(capture.release)
  fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
  return Video(name, fps, _camera_frames(capture), max_frames,
               is_camera=True)


def _open_file(path: str, name: str, max_frames: Optional[int],
               stack: contextlib.ExitStack) -> Video:
  """A video file, read as preparation reads it (`video_decode`): OpenCV,
  or PyAV where OpenCV has no decoder (AV1), frames turned upright."""
  if not os.path.exists(path):
    raise InputError(f'{name}: no such file.')
  if os.path.isdir(path):
    raise InputError(f'{name}: a folder with no videos in it (files '
                     f'ending in {", ".join(VIDEO_EXTENSIONS)}).')
  if os.path.getsize(path) == 0:
    raise InputError(f'{name}: an empty file.')
  try:
    stream = video_decode.open_video(path)
  except video_decode.VideoDecodeError as error:
    raise InputError(f'{name}: not readable as a video ({error.reason}).'
                     ) from error
  stack.callback(stream.close)
  return Video(name, stream.source_fps, iter(stream), max_frames)


@contextlib.contextmanager
def open_video(video: VideoInput, max_frames: Optional[int] = None
               ) -> Iterator[Video]:
  """`video`, opened (and downloaded first if a URL) for the block.

  Raises:
    InputError: it cannot be opened, downloaded or decoded (named).
  """
  with contextlib.ExitStack() as stack:
    location = video.location
    if isinstance(location, str) and is_url(location):
      location = stack.enter_context(_downloaded(location))
    if isinstance(location, int):
      yield _open_camera(location, video.name, max_frames, stack)
    else:
      yield _open_file(location, video.name, max_frames, stack)
