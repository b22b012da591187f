"""How clips are sampled from a prepared video: frames, size, augmentation."""

import dataclasses

from trainer import settings

RESIZE_MODES = ('crop', 'pad')


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Frames per clip, their spacing, their size and the augmentation.

  Attributes:
    num_frames: frames per clip.
    frame_step: source frames between sampled frames.
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
