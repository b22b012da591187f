"""What classification writes: tables, JSON, plots and annotated videos.

Every file is written whole or not at all (`trainer.files.replacing`).
With several inputs, one `--plot` or `--output_video` path becomes one
file per video: `<path stem>-<video stem><ext>` (`out.mp4` and videos
`a.avi`, `b.avi` give `out-a.mp4`, `out-b.mp4`; a stem met twice gets
`-2`, `-3`, ... after it); with one input the path is used as given.
"""

import contextlib
import os
from typing import Iterator, Sequence

import cv2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from trainer import files

VIDEO_FORMATS = ('.mp4', '.gif')


def top_k(probabilities, labels: Sequence[str], k: int) -> list[dict]:
  """The `k` likeliest classes, likeliest first: `[{'label', 'probability'}]`.
  """
  order = np.argsort(-np.asarray(probabilities), kind='stable')[:k]
  return [{'label': labels[index],
           'probability': round(float(probabilities[index]), 6)}
          for index in order]


def table(name: str, ranked: list[dict]) -> str:
  """A video's top-k as a text table, a header line naming it."""
  width = max([len(entry['label']) for entry in ranked] + [5])
  lines = [name, f'  {"label":<{width}}  probability']
  lines += [f'  {entry["label"]:<{width}}  {entry["probability"]:.4f}'
            for entry in ranked]
  return '\n'.join(lines)


def frame_line(name: str, time: float, ranked: list[dict]) -> str:
  """One stream frame's top-k on one line."""
  classes = '  '.join(f'{entry["label"]} {entry["probability"]:.3f}'
                      for entry in ranked)
  return f'{name}  {time:8.2f}s  {classes}'


def write_json(path: str, record) -> None:
  files.write_atomically(path, files.json_text(record))


def output_paths(path: str, stems: Sequence[str]) -> list[str]:
  """One output file per video of `stems` (see the module doc)."""
  if len(stems) == 1:
    return [path]
  root, extension = os.path.splitext(path)
  seen: dict[str, int] = {}
  paths = []
  for stem in stems:
    seen[stem] = seen.get(stem, 0) + 1
    suffix = f'-{seen[stem]}' if seen[stem] > 1 else ''
    paths.append(f'{root}-{stem}{suffix}{extension}')
  return paths


def plot(path: str, name: str, times, probabilities, labels,
         k: int) -> None:
  """Draws the probabilities over time of the `k` classes that reach the
  highest, one line each, as the official streaming notebook plots its
  top predictions; writes a PNG.

  Args:
    times: `(frames,)`, seconds into the video of each model frame.
    probabilities: `(frames, classes)`.
  """
  probabilities = np.asarray(probabilities)
  figure = Figure(figsize=(8, 4), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  for index in np.argsort(-probabilities.max(axis=0), kind='stable')[:k]:
    axes.plot(times, probabilities[:, index], label=labels[index])
  axes.set(xlabel='time (s)', ylabel='probability', ylim=(0.0, 1.0),
           title=name)
  axes.grid(alpha=0.3)
  axes.legend(loc='upper left', fontsize='small')
  figure.tight_layout()
  with files.replacing(path, suffix='.png') as temporary:
    figure.savefig(temporary, format='png')


def annotate(frame: np.ndarray, ranked: list[dict]) -> np.ndarray:
  """`frame` (RGB uint8) with the top-k written at its top left."""
  frame = np.ascontiguousarray(frame)
  height = frame.shape[0]
  scale = max(0.35, height / 720)
  step = int(22 * scale) + 6
  for row, entry in enumerate(ranked):
    text = f'{entry["label"]} {entry["probability"]:.2f}'
    origin = (6, step * (row + 1))
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), max(1, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(1.5 * scale)), cv2.LINE_AA)
  return frame


class _Mp4Writer:
  """RGB frames to an MP4 (MPEG-4 Part 2, `mp4v`) through OpenCV, opened at
  the first frame, whose size it takes."""

  def __init__(self, path: str, fps: float):
    self._path, self._fps, self._writer = path, fps, None

  def write(self, frame: np.ndarray) -> None:
    if self._writer is None:
      height, width = frame.shape[:2]
      self._writer = cv2.VideoWriter(
          self._path, cv2.VideoWriter_fourcc(*'mp4v'), self._fps,
          (width, height))
      if not self._writer.isOpened():
        raise OSError(f'cannot write an MP4 video at {self._path}')
    self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.release()


class _GifWriter:
  """RGB frames to an animated GIF through Pillow, kept until `close`."""

  def __init__(self, path: str, fps: float):
    self._path, self._fps, self._frames = path, fps, []

  def write(self, frame: np.ndarray) -> None:
    self._frames.append(Image.fromarray(frame))

  def close(self) -> None:
    if self._frames:
      self._frames[0].save(
          self._path, format='GIF', save_all=True,
          append_images=self._frames[1:], loop=0,
          duration=max(20, int(round(1000 / self._fps))))


def video_writer_extension(path: str) -> str:
  """`.mp4` or `.gif`, the format `path` asks for.

  Raises:
    ValueError: another extension.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension not in VIDEO_FORMATS:
    raise ValueError(f'--output_video={path}: end it in '
                     f'{" or ".join(VIDEO_FORMATS)}.')
  return extension


@contextlib.contextmanager
def video_writer(path: str, fps: float) -> Iterator:
  """A writer of RGB frames to `path` (MP4 through OpenCV, GIF through
  Pillow, by its extension) at `fps`; the file appears when the block ends
  without an error."""
  extension = video_writer_extension(path)
  writer_type = _Mp4Writer if extension == '.mp4' else _GifWriter
  # `files.replacing` removes its temporary on any exception, GeneratorExit
  # included.
  with files.replacing(path, suffix=extension) as temporary:  # pylint: disable=contextmanager-generator-missing-cleanup
    writer = writer_type(temporary, fps)
    try:
      yield writer
    finally:
      writer.close()
