"""Which frames of a video a model sees, and how they are resized.

Training took its clips from videos prepared at `ClipSampling.fps` (each
video's own rate when None), every `frame_step`-th prepared frame, resized
as `resize` says (`trainer.data.clip_ops`). Inference repeats that on the
frames of the source video:

- `resample_indices`: the source frames kept at a lower rate, nearest
  timestamp first, as `video_decode.decode_video` keeps them;
- `clip_indices`: the frames of `clips` clips spread evenly over a video,
  as evaluation takes them (short videos loop);
- `StreamSelector`: the same choice made one frame at a time, for a stream
  whose length is unknown (a camera);
- `preprocess`: RGB frames of any size to the model's square.
"""

import math
from typing import Optional

import numpy as np

from trainer.data import clip_ops
from trainer.data.sampling import ClipSampling

# The rate assumed for a source that does not announce one (some cameras
# and containers), frames per second.
DEFAULT_FPS = 25.0


def resample_indices(num_frames: int, source_fps: float,
                     target_fps: float) -> np.ndarray:
  """The indices of the source frames kept at `target_fps`.

  For each output timestamp `k / target_fps` the nearest source frame,
  `floor(k * source_fps / target_fps + 0.5)`: the rule preparation decodes
  with. A target at or above the source rate keeps every frame.

  Args:
    num_frames: frames of the source.
    source_fps: their rate, frames per second.
    target_fps: the rate wanted, frames per second.

  Returns:
    int64 `(kept,)`, increasing.
  """
  if target_fps >= source_fps:
    return np.arange(num_frames)
  ratio = source_fps / target_fps
  count = math.floor((num_frames - 1 + 0.5) / ratio) + 1 if num_frames else 0
  indices = np.floor(np.arange(count) * ratio + 0.5).astype(np.int64)
  return indices[indices < num_frames]


def clip_indices(num_available: int, num_frames: int, frame_step: int,
                 clips: int = 1) -> np.ndarray:
  """The frames of `clips` evaluation clips of a video of `num_available`.

  Each clip takes `num_frames` frames `frame_step` apart; the clips are
  centred in `clips` equal parts of the video (one clip: the middle one),
  and a video shorter than a clip starts at 0 and loops, as
  `clip_ops.eval_clip` does.

  Returns:
    int64 `(clips, num_frames)`.
  """
  if num_available < 1 or clips < 1:
    raise ValueError(f'clip_indices: num_available={num_available} and '
                     f'clips={clips} must be at least 1.')
  span = (num_frames - 1) * frame_step + 1
  slack = max(num_available - span, 0)
  starts = (2 * np.arange(clips) + 1) * slack // (2 * clips)
  offsets = np.arange(num_frames) * frame_step
  return (starts[:, None] + offsets[None, :]) % num_available


class StreamSelector:
  """Picks, one source frame at a time, the frames a stream model takes:
  every `frame_step`-th frame of the video resampled to the prepared rate,
  so the model sees frames at `sampling.model_fps(source_fps)`.

  `take(index)` must be called with 0, 1, 2, ... and says whether the
  source frame of that index goes to the model; the frames it picks are
  those of `resample_indices` followed by every `frame_step`-th.
  """

  def __init__(self, sampling: ClipSampling, source_fps: float):
    self._ratio = source_fps / sampling.prepared_fps(source_fps)
    self._frame_step = sampling.frame_step
    self._next_prepared = 0

  def take(self, index: int) -> bool:
    wanted = math.floor(self._next_prepared * self._ratio + 0.5)
    if index != wanted:
      return False
    self._next_prepared += 1
    return (self._next_prepared - 1) % self._frame_step == 0


def preprocess(frames, sampling: ClipSampling,
               image_size: Optional[int] = None) -> np.ndarray:
  """RGB frames of any size to what the model takes, as evaluation resizes.

  Args:
    frames: `(frames, height, width, 3)` or one `(height, width, 3)`
      frame; uint8, or float in [0, 1].
    sampling: its `resize` says how: 'crop' (short side to the size, centre
      square) or 'pad' (fitted whole, padded with black).
    image_size: the square's side, pixels; None: `sampling.image_size`.

  Returns:
    float32 `(frames, size, size, 3)` in [0, 1] (one frame: `(1, ...)`).
  """
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[None]
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f'Frames of shape {frames.shape}; pass RGB frames '
                     '(height, width, 3) or (frames, height, width, 3).')
  if frames.dtype != np.uint8:
    frames = frames.astype(np.float32)
  size = image_size or sampling.image_size
  resize = (clip_ops.center_crop_clip if sampling.resize == 'crop'
            else clip_ops.pad_clip)
  return resize(frames, size=size).numpy()


def softmax(logits) -> np.ndarray:
  """Probabilities of `logits` `(..., classes)`, float32."""
  logits = np.asarray(logits, np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
