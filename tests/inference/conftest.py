"""A tiny stream export (a0, 32 x 32, random weights) made once per test
run, the Keras model it came from, and real encoded videos.

Videos are MPEG-4 Part 2 (`mp4v`) in MP4 containers written by
`cv2.VideoWriter`, of `trainer.data.synthetic` frames.

The one test of the command as a process (`test_command`) costs a Python
and TensorFlow start-up; its process is started before the export, on the
Keras file of the same model, and runs while the export does.
"""

import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from trainer.data import synthetic
from trainer.data.sampling import ClipSampling
from trainer.export import exporter
from trainer.model import build_movinet_classifier

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


@pytest.fixture(scope='session')
def stream_export(tmp_path_factory, videos):
  """`model` (Keras, stream), `path`, its export directory, and `command`,
  a `movinet-classify` process on a missing video and `videos.a` (see the
  module doc), with `missing`, the path it was given."""
  model = build_movinet_classifier('a0', len(LABELS), stream=True)
  folder = tmp_path_factory.mktemp('inference')
  model.save(folder / 'model.keras')
  missing = folder / 'missing.mp4'
  command = subprocess.Popen(
      [sys.executable, '-m', 'trainer.classify_main',
       f'--keras={folder / "model.keras"}', '--top_k=2', str(missing),
       str(videos.a)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  try:
    exporter.export(model, LABELS, str(folder / 'export'), image_size=SIZE,
                    sampling=SAMPLING)
    yield types.SimpleNamespace(model=model, path=str(folder / 'export'),
                                command=command, missing=str(missing))
  finally:
    if command.poll() is None:
      command.kill()
    command.communicate()


@pytest.fixture(scope='session')
def base_model():
  """A base (not stream) t0 Keras model, random weights."""
  return build_movinet_classifier('t0', len(LABELS))


@pytest.fixture(scope='session')
def videos(tmp_path_factory):
  """Two MP4 videos, `a.mp4` and `b.mp4`, in the folder `root`."""
  root = tmp_path_factory.mktemp('videos')
  for seed, name in enumerate(('a', 'b')):
    write_video(root / f'{name}.mp4', video_frames(seed))
  return types.SimpleNamespace(root=root, a=root / 'a.mp4',
                               b=root / 'b.mp4')
