"""The stream export the export and inference tests share: an a0 stream
model (random weights, 32 x 32) exported once per test process in every
quantization, int8 calibrated on a prepared split of synthetic videos; and
real encoded videos.

Videos are MPEG-4 Part 2 (`mp4v`) in MP4 containers written by
`cv2.VideoWriter`, of `trainer.data.synthetic` frames. The modules that use
the export name `XDIST_GROUP = EXPORT_GROUP`, so that one worker makes it.
"""

import cv2
import numpy as np

from trainer.data import synthetic
from trainer.data.sampling import ClipSampling

EXPORT_GROUP = 'stream_export'
LABELS = ('jump', 'run', 'walk')
SIZE = 32
# The run's sampling the export records: 4-frame clips, every 3rd frame,
# at each video's own rate, 32 x 32 centre crops.
SAMPLING = ClipSampling(num_frames=4, frame_step=3, image_size=SIZE)
VIDEO_FPS, VIDEO_FRAMES, VIDEO_HW = 30.0, 20, (48, 64)


def write_video(path, frames, fps=VIDEO_FPS) -> None:
  """Encodes RGB `frames` as an MP4 (mp4v) file at `path`."""
  height, width = frames.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                           (width, height))
  assert writer.isOpened()
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


def video_frames(seed: int = 0) -> np.ndarray:
  return synthetic.frames_for(seed % len(synthetic.CLASS_NAMES),
                              np.random.default_rng(seed), VIDEO_FRAMES,
                              VIDEO_HW)


