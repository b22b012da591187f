"""Input throughput of `train_dataset` against the MoViNet tutorial's loader.

Command (repository root; about 1 minute on a 2-core CPU; `--help` for more):

  PYTHONPATH=. python benchmarks/input_pipeline.py

Data: `synthetic.generate_videos`, 4 classes x 24 MJPG AVIs of 120 frames,
240 x 320, 25 fps, seed 0, in a temporary folder (120 frames exceed the
106-frame span of 8 frames every 15: no looping, no padding). `prepare`
(folder source, all in 'train', 8 shards of 12, `short_side=0` so the frames
stay the 240 x 320 the seed loader reads) turns them into TFRecords.

Measured:
  1. Preparation: frames written per second of one `prepare` call, with
     `workers=1` and `os.cpu_count()` (in a fresh interpreter: its `spawn`
     workers re-import `__main__`, and this script imports TensorFlow).
  2. Clips per second reaching the caller; batch 8, 8 frames every 15,
     224 x 224 float32.
       seed      the tutorial (tensorflow.org/tutorials/video/
                 transfer_learning_with_movinet): a generator that per clip
                 opens `cv2.VideoCapture`, seeks to a random start, reads 106
                 frames keeping every 15th, `convert_image_dtype`,
                 `resize_with_pad`, BGR -> RGB; `from_generator`, batch,
                 prefetch (not `.cache()`, which would replay epoch 1).
       pipeline  `train_dataset(manifest, 'train', sampling, seed=0,
                 epoch=k, ...)`: epoch k of a training run, as `fit` reads
                 it (a new dataset each epoch, shuffled anew).
     Epochs alternate, seed then pipeline. Each epoch's first batch (iterator
     start, buffer fills) is timed apart: `clips/s` leaves it out, `with 1st`
     counts it. `CPU ms/clip` (process CPU time, all threads, per clip) does
     not depend on how many cores are free; clips/s does.

Prints the tables and the ratio pipeline / seed (project goal: >= 15x).
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# pylint: disable=wrong-import-position
import cv2
from absl import logging
import numpy as np
import tensorflow as tf

from trainer.data import synthetic
from trainer.data.manifest import Manifest
from trainer.data.pipeline import train_dataset
from trainer.data.sampling import Sampling
# pylint: enable=wrong-import-position

GOAL_RATIO = 15.0
VIDEO_FRAMES, VIDEO_SIZE, VIDEO_FPS = 120, (240, 320), 25  # frames, px, 1/s
BATCH, NUM_FRAMES, FRAME_STEP, IMAGE_SIZE = 8, 8, 15, 224  # clips, frames, px


def parse_args():
  """The command line, with this module's first docstring line as help."""
  parser = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
  parser.add_argument('--classes', type=int, default=4, help='2..6')
  parser.add_argument('--videos', type=int, default=24, help='per class')
  parser.add_argument('--epochs', type=int, default=3,
                      help='timed epochs per loader')
  parser.add_argument('--short_side', type=int, default=0,
                      help='prepare: short side in px; 0 keeps 240 x 320')
  parser.add_argument('--shard_clips', type=int, default=12,
                      help='prepare: videos per shard (12: 8 equal shards)')
  args = parser.parse_args()
  for name in ('videos', 'epochs', 'shard_clips'):
    if getattr(args, name) < 1:
      parser.error(f'--{name}={getattr(args, name)} must be >= 1.')
  return args


# Runs `prepare` in a fresh interpreter: its `spawn` workers re-import the
# `__main__` module, and this one imports TensorFlow (~4 s per worker).
_PREPARE_CODE = """
import json, sys, time
from trainer.data.prepare import prepare
start = time.perf_counter()
manifest = prepare(**json.loads(sys.argv[1]))
print(json.dumps([manifest.splits['train'].num_frames,
                  time.perf_counter() - start]))
"""


def prepare_videos(video_dir, output_dir, workers, args):
  """`prepare(...)` of `video_dir`, all in 'train'; (frames written, s)."""
  settings = dict(source='folder', video_dir=video_dir, output_dir=output_dir,
                  workers=workers, splits=f'train:{args.videos}',
                  short_side=args.short_side, shard_clips=args.shard_clips)
  result = subprocess.run(
      [sys.executable, '-c', _PREPARE_CODE, json.dumps(settings)],
      check=True, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  frames, seconds = json.loads(result.stdout.strip().splitlines()[-1])
  return frames, seconds


def format_frames(frame, output_size):
  """The tutorial's `format_frames`: to float32 [0, 1], resize with pad."""
  frame = tf.image.convert_image_dtype(frame, tf.float32)
  return tf.image.resize_with_pad(frame, *output_size)


def frames_from_video_file(video_path, n_frames, output_size, frame_step):
  """The tutorial's reader: `(n_frames, *output_size, 3)` float32 RGB."""
  result = []
  src = cv2.VideoCapture(str(video_path))
  video_length = src.get(cv2.CAP_PROP_FRAME_COUNT)
  need_length = 1 + (n_frames - 1) * frame_step
  if need_length > video_length:
    start = 0
  else:
    start = random.randint(0, int(video_length - need_length))
  src.set(cv2.CAP_PROP_POS_FRAMES, start)
  _, frame = src.read()
  result.append(format_frames(frame, output_size))
  for _ in range(n_frames - 1):
    for _ in range(frame_step):
      ret, frame = src.read()
    if ret:
      result.append(format_frames(frame, output_size))
    else:
      result.append(np.zeros_like(result[0]))
  src.release()
  return np.array(result)[..., [2, 1, 0]]  # BGR -> RGB, as the tutorial.


def seed_dataset(video_dir):
  """The tutorial's `FrameGenerator` + `from_generator` + batch + prefetch."""
  classes = sorted(os.listdir(video_dir))
  pairs = [(os.path.join(video_dir, c, f), i) for i, c in enumerate(classes)
           for f in sorted(os.listdir(os.path.join(video_dir, c)))]

  def generator():
    random.shuffle(pairs)
    for path, label in pairs:
      yield frames_from_video_file(path, NUM_FRAMES, (IMAGE_SIZE, IMAGE_SIZE),
                                   FRAME_STEP), label

  signature = (tf.TensorSpec((None, None, None, 3), tf.float32),
               tf.TensorSpec((), tf.int16))
  return tf.data.Dataset.from_generator(
      generator, output_signature=signature).batch(BATCH).prefetch(
          tf.data.AUTOTUNE)


def cpu_seconds():
  """CPU time of this process, all threads, user + system, in seconds."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def time_epoch(dataset):
  """(first-batch s, clips after it, their wall s, their CPU s)."""
  start = time.perf_counter()
  iterator = iter(dataset)
  next(iterator)
  first = time.perf_counter() - start
  clips, start, cpu_start = 0, time.perf_counter(), cpu_seconds()
  for video, _ in iterator:
    clips += int(video.shape[0])
  return (first, clips, time.perf_counter() - start,
          cpu_seconds() - cpu_start)


def main():
  args = parse_args()
  logging.set_verbosity(logging.WARNING)
  random.seed(0)
  workers_all = os.cpu_count() or 1
  with tempfile.TemporaryDirectory(prefix='input_pipeline_') as tmp:
    video_dir = os.path.join(tmp, 'videos')
    start = time.perf_counter()
    synthetic.generate_videos(video_dir, args.classes, args.videos,
                              VIDEO_FRAMES, VIDEO_SIZE, VIDEO_FPS, seed=0)
    print(f'\nData: {args.classes * args.videos} videos x {VIDEO_FRAMES} '
          f'frames, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} MJPG, generated in '
          f'{time.perf_counter() - start:.1f} s')

    print('\nPreparation (videos -> TFRecords)')
    print(f'{"workers":>8} {"frames":>8} {"seconds":>8} {"frames/s":>9}')
    prepared = {}
    for workers in sorted({1, workers_all}):
      out = os.path.join(tmp, f'prepared_w{workers}')
      frames, seconds = prepare_videos(video_dir, out, workers, args)
      prepared[workers] = out
      print(f'{workers:>8} {frames:>8} {seconds:>8.1f} '
            f'{frames / seconds:>9.0f}')

    manifest = Manifest.read(prepared[workers_all])
    sampling = Sampling(num_frames=NUM_FRAMES, frame_step=FRAME_STEP,
                        image_size=IMAGE_SIZE)
    seed_loader = seed_dataset(video_dir)
    loaders = {
        'seed': lambda epoch: seed_loader,
        'pipeline': lambda epoch: train_dataset(
            manifest, 'train', sampling, batch_size=BATCH, seed=0,
            epoch=epoch),
    }
    totals = {name: np.zeros(4) for name in loaders}
    for epoch in range(args.epochs):
      for name, make_dataset in loaders.items():
        first, clips, seconds, cpu = time_epoch(make_dataset(epoch))
        totals[name] += (clips, seconds, cpu, first)

    print(f'\nInput (batch {BATCH}, {NUM_FRAMES} frames every {FRAME_STEP}, '
          f'{IMAGE_SIZE}x{IMAGE_SIZE}; {args.epochs} epochs each, '
          'interleaved)')
    print(f'{"loader":>8} {"clips":>6} {"seconds":>8} {"clips/s":>8} '
          f'{"CPU ms/clip":>12} {"1st batches s":>14} {"with 1st":>9}')
    steady, whole = {}, {}
    for name, (clips, seconds, cpu, firsts) in totals.items():
      clips = int(clips)
      steady[name] = clips / seconds
      whole[name] = (clips + BATCH * args.epochs) / (seconds + firsts)
      print(f'{name:>8} {clips:>6} {seconds:>8.2f} {steady[name]:>8.1f} '
            f'{1e3 * cpu / clips:>12.1f} {firsts:>14.2f} {whole[name]:>9.1f}')
    ratio = steady['pipeline'] / steady['seed']
    verdict = 'meets' if ratio >= GOAL_RATIO else 'BELOW'
    print(f'\npipeline / seed: {ratio:.1f}x steady ({verdict} the '
          f'{GOAL_RATIO:.0f}x goal), '
          f'{whole["pipeline"] / whole["seed"]:.1f}x with first batches')


if __name__ == '__main__':
  main()
