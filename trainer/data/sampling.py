"""How clips are sampled from a prepared video: frames, size, augmentation."""

import dataclasses
from typing import Any, Optional

from trainer import settings

RESIZE_MODES = ('crop', 'pad')
# The file a training run records its `ClipSampling` in, in its model_dir.
SAMPLING_FILE = 'sampling.json'


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Frames per clip, their spacing, their size and the augmentation.

  Attributes:
    num_frames: frames per clip.
    frame_step: frames of the prepared video (at the manifest's
      `frames.fps`) between sampled frames.
    image_size: clip height and width (pixels).
    train_resize: 'crop' (a random resized crop of each training clip) or
      'pad' (the whole frame, fitted and padded).
    eval_resize: 'crop' (centre crop) or 'pad' (fit and pad).
    min_crop_area: smallest area fraction of a training crop.
    flip: random horizontal flips in training.
  """
  num_frames: int = 8
  frame_step: int = 15
  image_size: int = 172
  train_resize: str = 'crop'
  eval_resize: str = 'crop'
  min_crop_area: float = 0.3
  flip: bool = True

  def __post_init__(self):
    settings.check_types(self)
    settings.check_at_least(self, 1, 'num_frames', 'frame_step',
                            'image_size')
    settings.check_choice(self, 'train_resize', RESIZE_MODES)
    settings.check_choice(self, 'eval_resize', RESIZE_MODES)
    if not 0.0 < self.min_crop_area <= 1.0:
      raise settings.SettingError(type(self).__name__, 'min_crop_area',
                                  self.min_crop_area, 'must lie in (0, 1]')


@dataclasses.dataclass(frozen=True)
class ClipSampling:
  """How a trained model's clips come from a video, which inference must
  repeat: what a training run records (`sampling.json` in its model_dir)
  and an export keeps (`export.json`).

  Attributes:
    num_frames: frames per clip.
    frame_step: frames of the prepared video between sampled frames.
    fps: the rate the videos were prepared at, frames per second; None: each
      video's own rate.
    image_size: clip height and width (pixels).
    resize: 'crop' (short side to `image_size`, centre crop) or 'pad' (the
      whole frame fitted in the square and padded with black).
  """
  num_frames: int = Sampling.num_frames
  frame_step: int = Sampling.frame_step
  fps: Optional[float] = None
  image_size: int = Sampling.image_size
  resize: str = Sampling.eval_resize

  def __post_init__(self):
    settings.check_at_least(self, 1, 'num_frames', 'frame_step',
                            'image_size')
    settings.check_choice(self, 'resize', RESIZE_MODES)

  @classmethod
  def of(cls, sampling: Sampling, fps: Optional[float]) -> 'ClipSampling':
    """What inference repeats of a run's `sampling` of videos kept at
    `fps` (None: their own rate)."""
    return cls(num_frames=sampling.num_frames,
               frame_step=sampling.frame_step, fps=fps,
               image_size=sampling.image_size, resize=sampling.eval_resize)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> 'ClipSampling':
    """The sampling a `to_json` record gives (unknown keys ignored)."""
    known = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in record.items()
                  if name in known})

  def prepared_fps(self, video_fps: float) -> float:
    """The rate a video of `video_fps` was prepared at: `fps` when lower
    (preparation never raises a rate), else the video's own."""
    if self.fps and self.fps < video_fps:
      return float(self.fps)
    return float(video_fps)

  def model_fps(self, video_fps: float) -> float:
    """The rate, frames per second, at which the model saw the frames of a
    video of `video_fps` in training: the prepared rate over `frame_step`.
    Streaming feeds frames at this rate."""
    return self.prepared_fps(video_fps) / self.frame_step
