"""The embedded default dataset: shapes whose class is their motion.

Every video shows a flat, dark random background with faint static noise and
one or two solid shapes (an ellipse or a rectangle, elongated, at a random
angle) of random bright colour and random size. Shapes are always brighter
than the background, as lit objects on a dark scene: with one contrast
polarity a moving-edge detector means the same in every video, which lets a
network trained from scratch find the motion in minutes (with random
polarities it stayed at chance for as long as we trained). The class decides
only how the shapes move:

  moving_left, moving_right, moving_up, moving_down
      all shapes translate together at a per-video speed of 2 %..4 % of the
      shorter frame side per frame (2.4..4.8 px at the default 120 x 160),
      slow enough for a 3-frame kernel to follow after the network's first
      downsampling.
  rotating_cw, rotating_ccw
      each shape spins about its own centre at a per-video 10..25 degrees per
      frame, clockwise or counter-clockwise as seen on screen.

The frame is a torus: a shape leaving one edge re-enters at the opposite edge
(wrap-around, not bounce). Wrap-around keeps a uniformly placed shape uniformly
placed, so together with uniform starting angles every single frame of every
class is drawn from the same distribution, and only motion across frames tells
the classes apart. A per-frame classifier is at chance. Stronger still: the
random draws do not depend on the class, so the same generator state gives the
same first frame for every class (the tests check this).

`generate_videos` writes `<output_dir>/<class>/<class>_<index:04d>.avi` as
MJPG AVI files at `fps` frames per second; the bytes depend only on `seed`,
the class and the index.
"""

import dataclasses
import os
from typing import List, Sequence, Tuple

from absl import logging
import cv2
import numpy as np
import tqdm

from trainer import files

CLASS_NAMES = ('moving_left', 'moving_right', 'moving_up', 'moving_down',
               'rotating_cw', 'rotating_ccw')

# Unit velocity of each translation class, (dx, dy) in image coordinates
# (y grows downwards); rotation classes give the spin sign instead (+1 spins
# clockwise on screen, i.e. angles grow in image coordinates).
_TRANSLATION = {
    'moving_left': (-1.0, 0.0),
    'moving_right': (1.0, 0.0),
    'moving_up': (0.0, -1.0),
    'moving_down': (0.0, 1.0),
}
_SPIN = {'rotating_cw': 1.0, 'rotating_ccw': -1.0}

# Per-video speed, as a fraction of the shorter frame side per frame.
SPEED_RANGE = (0.02, 0.04)
# Per-video spin, degrees per frame (under 90: elongated shapes repeat every
# 180 degrees, so a larger step would alias).
SPIN_RANGE_DEGREES = (10.0, 25.0)
# Shape half-length (fraction of the shorter side) and minor/major ratio.
HALF_LENGTH_RANGE = (0.15, 0.25)
ASPECT_RANGE = (0.35, 0.6)
# Largest background noise standard deviation, 0..255 scale.
MAX_NOISE_STD = 6.0
# Per-channel ranges (0..255) of background and shape colours: every shape is
# brighter than every background by at least 80 in each channel.
BACKGROUND_RANGE = (0, 70)
SHAPE_RANGE = (150, 256)

FOURCC = 'MJPG'
_PROGRESS_MIN_VIDEOS = 8
# Shapes are drawn at 1/16 pixel precision so slow motion stays smooth.
_SUBPIXEL_BITS = 4


@dataclasses.dataclass(frozen=True)
class SyntheticClip:
  """Frames of one synthetic video, before encoding, with shape masks.

  Attributes:
    frames: uint8 RGB `(frames, height, width, 3)`.
    masks: bool `(frames, height, width)`, True where any shape is drawn.
  """
  frames: np.ndarray
  masks: np.ndarray


def render_clip(class_index: int,
                rng: np.random.Generator,
                num_frames: int = 16,
                size: Tuple[int, int] = (120, 160)) -> SyntheticClip:
  """Draws one video of class `CLASS_NAMES[class_index]`.

  Consumes the same random draws whatever the class, so one generator state
  gives every class the same first frame.

  Args:
    class_index: Index into `CLASS_NAMES`.
    rng: Source of all randomness.
    num_frames: Frames to draw.
    size: `(height, width)` in pixels.

  Returns:
    A `SyntheticClip` with frames `(num_frames, height, width, 3)`.
  """
  _check_class_index(class_index, len(CLASS_NAMES))
  height, width = size
  short = min(height, width)
  background = _background(rng, height, width)
  shapes = [_random_shape(rng, height, width, short)
            for _ in range(int(rng.integers(1, 3)))]
  speed = rng.uniform(*SPEED_RANGE) * short
  spin = rng.uniform(*SPIN_RANGE_DEGREES)

  name = CLASS_NAMES[class_index]
  dx, dy = (speed * v for v in _TRANSLATION.get(name, (0.0, 0.0)))
  spin *= _SPIN.get(name, 0.0)

  frames = np.empty((num_frames, height, width, 3), np.uint8)
  masks = np.zeros((num_frames, height, width), bool)
  for t in range(num_frames):
    frame = background.copy()
    for shape in shapes:
      centre = ((shape['x'] + t * dx) % width, (shape['y'] + t * dy) % height)
      mask = _wrapped_mask(shape, centre, shape['angle'] + t * spin,
                           height, width)
      frame[mask] = shape['colour']
      masks[t] |= mask
    frames[t] = frame
  return SyntheticClip(frames=frames, masks=masks)


def frames_for(class_index: int,
               rng: np.random.Generator,
               num_frames: int = 16,
               size: Tuple[int, int] = (120, 160)) -> np.ndarray:
  """uint8 RGB frames `(num_frames, height, width, 3)` of one video.

  The frames `generate_videos` encodes; see `render_clip` for the arguments.
  """
  return render_clip(class_index, rng, num_frames, size).frames


def video_rng(seed: int, class_index: int, index: int) -> np.random.Generator:
  """The generator of video `index` of class `class_index` under `seed`.

  Independent of how many classes or videos are generated, so growing the
  dataset never changes the videos already in it.
  """
  return np.random.default_rng(np.random.SeedSequence([seed, class_index,
                                                       index]))


def generate_videos(output_dir: str,
                    num_classes: int = 4,
                    videos_per_class: int = 32,
                    num_frames: int = 16,
                    size: Tuple[int, int] = (120, 160),
                    fps: float = 10,
                    seed: int = 0) -> List[str]:
  """Writes the synthetic dataset as MJPG AVI files.

  Each file is written under a hidden temporary name in its class folder and
  renamed into place (`files.replacing`), so an interrupted run leaves no
  partial video.

  Args:
    output_dir: Root folder; gets one sub-folder per class.
    num_classes: Uses the first `num_classes` of `CLASS_NAMES` (2..6); the
      default 4 are the four translations.
    videos_per_class: Videos per class.
    num_frames: Frames per video.
    size: `(height, width)` in pixels, each at least 16.
    fps: Frame rate written into the container, frames per second.
    seed: Seed; same arguments give byte-identical files.

  Returns:
    The written paths, class by class, index by index.

  Raises:
    ValueError: an argument is out of range.
    OSError: OpenCV cannot open a video writer in `output_dir`.
  """
  _check_generate_arguments(num_classes, videos_per_class, num_frames, size,
                            fps)
  height, width = size
  jobs = [(c, i) for c in range(num_classes) for i in range(videos_per_class)]
  logging.info('Writing %d synthetic videos (%d classes, %d frames of %dx%d) '
               'to %s', len(jobs), num_classes, num_frames, height, width,
               output_dir)
  paths = []
  for class_index, index in tqdm.tqdm(
      jobs, desc='synthetic videos', unit='video',
      disable=len(jobs) < _PROGRESS_MIN_VIDEOS):
    name = CLASS_NAMES[class_index]
    folder = os.path.join(output_dir, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f'{name}_{index:04d}.avi')
    frames = frames_for(class_index, video_rng(seed, class_index, index),
                        num_frames, (height, width))
    _write_avi_atomically(path, frames, fps)
    paths.append(path)
  return paths


def _write_avi_atomically(path: str, frames: np.ndarray, fps: float) -> None:
  """Writes RGB `(frames, height, width, 3)` to `path` via a temporary file.

  The temporary is hidden (a folder of videos is listed without it) and
  ends in '.avi', from which OpenCV picks the container.
  """
  height, width = frames.shape[1:3]
  with files.replacing(path, suffix='.avi', hidden=True) as temporary:
    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*FOURCC),
                             float(fps), (width, height))
    try:
      if not writer.isOpened():
        raise OSError(f'cv2.VideoWriter cannot open {temporary!r} with '
                      f'fourcc {FOURCC}; check that the folder is writable '
                      'and that OpenCV was built with FFmpeg.')
      for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
      writer.release()


def _background(rng, height, width) -> np.ndarray:
  """A flat dark random colour plus faint static Gaussian noise, uint8 RGB."""
  colour = rng.uniform(*BACKGROUND_RANGE, 3)
  noise_std = rng.uniform(0, MAX_NOISE_STD)
  noise = rng.normal(0.0, noise_std, (height, width, 1))
  return np.clip(colour + noise, 0, 255).round().astype(np.uint8)


def _random_shape(rng, height, width, short) -> dict:
  """Kind, start centre, half-axes, angle and a colour contrasting the base."""
  kind = 'ellipse' if rng.random() < 0.5 else 'rectangle'
  half_length = rng.uniform(*HALF_LENGTH_RANGE) * short
  half_width = half_length * rng.uniform(*ASPECT_RANGE)
  colour = rng.integers(*SHAPE_RANGE, 3)
  return {
      'kind': kind,
      'x': rng.uniform(0, width),
      'y': rng.uniform(0, height),
      'half_axes': (half_length, half_width),
      'angle': rng.uniform(0, 180),
      'colour': colour.astype(np.uint8),
  }


def _wrapped_mask(shape, centre, angle, height, width) -> np.ndarray:
  """bool `(height, width)` mask of `shape` at `centre`, wrapped on a torus."""
  canvas = np.zeros((height, width), np.uint8)
  half_length, half_width = shape['half_axes']
  for oy in (-height, 0, height):
    for ox in (-width, 0, width):
      cx, cy = centre[0] + ox, centre[1] + oy
      if shape['kind'] == 'ellipse':
        cv2.ellipse(canvas, _fixed_point((cx, cy)),
                    _fixed_point((half_length, half_width)), angle, 0, 360, 1,
                    thickness=-1, shift=_SUBPIXEL_BITS)
      else:
        box = ((cx, cy), (2 * half_length, 2 * half_width), angle)
        corners = np.round(cv2.boxPoints(box) * (1 << _SUBPIXEL_BITS))
        cv2.fillPoly(canvas, [corners.astype(np.int32)], 1,
                     shift=_SUBPIXEL_BITS)
  return canvas.astype(bool)


def _fixed_point(xy):
  """Float pixel coordinates as ints with `_SUBPIXEL_BITS` fraction bits."""
  return tuple(int(round(v * (1 << _SUBPIXEL_BITS))) for v in xy)


def _check_class_index(class_index, num_classes):
  if not (isinstance(class_index, (int, np.integer)) and
          0 <= class_index < num_classes):
    raise ValueError(f'class_index={class_index!r} is not allowed; pass an int '
                     f'in [0, {num_classes}) indexing CLASS_NAMES.')


def _check_generate_arguments(num_classes, videos_per_class, num_frames, size,
                              fps):
  """Raises ValueError naming the argument, value, allowed range and fix."""
  checks = [
      ('num_classes', num_classes,
       isinstance(num_classes, int) and 2 <= num_classes <= len(CLASS_NAMES),
       f'an int in [2, {len(CLASS_NAMES)}]'),
      ('videos_per_class', videos_per_class,
       isinstance(videos_per_class, int) and videos_per_class >= 1,
       'an int >= 1'),
      ('num_frames', num_frames,
       isinstance(num_frames, int) and num_frames >= 2, 'an int >= 2'),
      ('size', size,
       isinstance(size, Sequence) and len(size) == 2 and
       all(isinstance(s, int) and s >= 16 for s in size),
       '(height, width), ints >= 16'),
      ('fps', fps, isinstance(fps, (int, float)) and fps > 0,
       'a positive number of frames per second'),
  ]
  for name, value, ok, allowed in checks:
    if not ok:
      raise ValueError(f'generate_videos: {name}={value!r} is not allowed; '
                       f'pass {allowed}.')
