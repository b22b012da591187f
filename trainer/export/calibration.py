"""Clips of the user's own prepared videos, for int8 calibration.

The official export calibrates on Kinetics alone; here the ranges come from
a split the user prepared with `movinet-prepare`, sampled as the model was
trained (`ClipSampling`) and sized as the TFLite model takes them. The
shards mix the classes (preparation shuffles before it shards), so the first
clips of a split in manifest order are a sample of all of it.
"""

import dataclasses
from typing import Optional

import numpy as np

from trainer.data import pipeline
from trainer.data.manifest import Manifest
from trainer.data.sampling import ClipSampling
from trainer.data.sampling import Sampling


@dataclasses.dataclass(frozen=True)
class CalibrationClips:
  """Clips `(1, frames, size, size, 3)` float32 in [0, 1] and their labels
  (indices into the prepared directory's labels)."""
  clips: tuple[np.ndarray, ...]
  labels: tuple[int, ...]
  label_names: tuple[str, ...]


def read_clips(data_dir: str, split: str, count: int,
               sampling: ClipSampling, image_size: int,
               num_frames: Optional[int] = None) -> CalibrationClips:
  """The first `count` clips of `split` in `data_dir` (fewer if the split
  has fewer), one centre clip per video.

  Args:
    data_dir: a directory `movinet-prepare` wrote.
    split: its split to read, e.g. 'test'.
    count: how many clips.
    sampling: how the model's clips were taken (frames, step, resize).
    image_size: the TFLite model's height and width.
    num_frames: frames per clip (a base TFLite model's); None: the
      sampling's.

  Raises:
    ValueError: a missing or unprepared directory, or a split it lacks
      (named, as `--calibration_data` / `--calibration_split`).
  """
  if count < 1:
    raise ValueError(f'--calibration_clips={count} must be at least 1')
  manifest = Manifest.read(data_dir)
  manifest.check_files()
  manifest.split(split, '--calibration_split')
  clip_sampling = Sampling(
      num_frames=num_frames or sampling.num_frames,
      frame_step=sampling.frame_step, image_size=image_size,
      eval_resize=sampling.resize)
  dataset = pipeline.eval_dataset(manifest, split, clip_sampling,
                                  batch_size=1).take(count)
  clips, labels = [], []
  for video, label in dataset.as_numpy_iterator():
    clips.append(video)
    labels.append(int(label[0]))
  return CalibrationClips(tuple(clips), tuple(labels), manifest.labels)
