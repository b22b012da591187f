"""Input throughput as training sees it: `train_dataset` against the tutorial.

Command (repository root; about 3 minutes on a 2-core CPU; `--help` for
more; a quick small run: `--classes=2 --videos=8 --epochs=1`):

  PYTHONPATH=. python benchmarks/input_pipeline.py --source_rate --profile

Data, like the training split of the UCF101 recipes (10 classes, 30 videos
each; gin/ucf101_a0_tutorial.gin): `--classes` x `--videos` AVIs of 320 x
240, 175 frames at 25 fps (7 s), XviD (MPEG-4 Part 2) as OpenCV writes it
(fourcc XVID), seed 0. Each is a textured scene in motion: a background
of 1/f noise (the spectrum of natural images) panning at its own velocity,
two or three textured ellipses crossing it, and sensor noise. Their frames,
as JPEGs of quality 90, take about 16 KB as UCF101's do (the mean is
printed).

Preparation: `prepare` (folder source, all videos in 'train', its default
shards of 64 videos and short side of at most 256 px) keeps the frames at
`--fps` (5: every frame a clip of frames 0.6 s apart can take) and, with
`--source_rate`, also at the videos' own 25 fps.

Loaders, all batch 8 of clips of 8 frames 0.6 s apart, 224 x 224, float32:
  tutorial   tensorflow.org/tutorials/video/transfer_learning_with_movinet:
             a generator that per clip opens `cv2.VideoCapture`, seeks to a
             random start, reads 106 frames keeping every 15th,
             `convert_image_dtype`, `resize_with_pad`, BGR -> RGB;
             `from_generator`, batch, prefetch; the same dataset each epoch,
             as the tutorial's `fit` reads it.
  pipeline   `train_dataset(manifest, 'train', sampling, seed=0, epoch=k)`
             of the records at `--fps` (8 frames every 3 at 5 fps), random
             resized crops and flips: epoch k of a run as `movinet-train`
             makes it, a new dataset every epoch, the default shuffle
             buffer (256 records).
  @25fps     (`--source_rate`) the same of the records at 25 fps (8 frames
             every 15).
Epochs alternate between the loaders, after one batch of each (TensorFlow's
one-time start, not timed). An epoch is timed whole: the dataset made, its
iterator, every batch. `start s` is the mean time to the first
batch (dataset, iterator, buffers filled), counted in `clips/s` too. `per
core` divides clips/s by the cores this process may use; `CPU ms/clip`
(process CPU time, all threads, over whole epochs) does not depend on how
many cores other processes leave free, clips/s does.

Prints the table, the verdicts on the goals (pipeline >= 15x the tutorial's
clips/s; >= 100 clips/s per core) and, with `--profile`, the CPU ms per clip
of each stage of the pipeline, timed on its own.
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

from trainer.data import schema
from trainer.data.manifest import Manifest
from trainer.data.pipeline import train_dataset
from trainer.data.sampling import Sampling
# pylint: enable=wrong-import-position

GOAL_RATIO = 15.0  # pipeline / tutorial, clips/s
GOAL_PER_CORE = 100.0  # clips/s per core
VIDEO_SIZE, VIDEO_FPS, FOURCC = (240, 320), 25, 'XVID'  # px, 1/s
BATCH, NUM_FRAMES, FRAME_STEP, IMAGE_SIZE = 8, 8, 15, 224  # clips, frames, px
CLIP_SECONDS = FRAME_STEP / VIDEO_FPS  # between sampled frames, 0.6 s
TEXTURE = 512  # px, side of a scene's (tileable) background texture


def parse_args():
  """The command line, with this module's first docstring line as help."""
  parser = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
  parser.add_argument('--classes', type=int, default=10,
                      help='class folders')
  parser.add_argument('--videos', type=int, default=30, help='per class')
  parser.add_argument('--frames', type=int, default=175,
                      help='frames per video, at 25 fps')
  parser.add_argument('--epochs', type=int, default=3,
                      help='timed epochs per loader')
  parser.add_argument('--fps', type=float, default=5.0,
                      help='rate the pipeline\'s records are prepared at; '
                      '0.6 s must be a whole number of its frames')
  parser.add_argument('--source_rate', action='store_true',
                      help='also time records at the videos\' own 25 fps')
  parser.add_argument('--profile', action='store_true',
                      help='also time each stage of the pipeline on its own')
  args = parser.parse_args()
  for name in ('classes', 'videos', 'epochs'):
    if getattr(args, name) < 1:
      parser.error(f'--{name}={getattr(args, name)} must be >= 1.')
  if args.frames < 106:
    parser.error(f'--frames={args.frames} must be >= 106, the span of 8 '
                 'frames every 15.')
  step = CLIP_SECONDS * args.fps
  if not 0 < args.fps <= VIDEO_FPS or abs(step - round(step)) > 1e-6:
    parser.error(f'--fps={args.fps:g} must be at most {VIDEO_FPS} and take '
                 f'a whole number of frames in {CLIP_SECONDS:g} s (5, 10, '
                 '25).')
  return args


def _texture(rng, size, slope=1.6):
  """Tileable noise, float32 `(size, size, 3)`, zero mean, unit deviation,
  whose amplitude falls as 1 / frequency**slope (natural images: about 1 to
  2); the channels share most of it."""
  fy = np.fft.fftfreq(size)[:, None]
  fx = np.fft.rfftfreq(size)[None, :]
  frequency = np.hypot(fy, fx)
  frequency[0, 0] = np.inf
  shape = (size, size // 2 + 1, 2)
  spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)
              ) / frequency[..., None]**slope
  noise = np.fft.irfft2(spectrum, s=(size, size), axes=(0, 1))
  noise /= noise.std(axis=(0, 1))
  luma, chroma = noise[..., :1], noise[..., 1:]
  return (luma + chroma * rng.uniform(-0.5, 0.5, 3)).astype(np.float32)


def scene_frames(rng, num_frames):
  """uint8 RGB `(num_frames, 240, 320, 3)` of a textured scene in motion."""
  height, width = VIDEO_SIZE
  background = 128 + rng.uniform(-30, 30, 3) + 40 * _texture(rng, TEXTURE)
  background = np.tile(background, (2, 2, 1))  # windows need no wrapping
  pan = rng.uniform(0.5, 2.0) * np.exp(2j * np.pi * rng.uniform())
  objects = []
  for _ in range(int(rng.integers(2, 4))):
    objects.append(dict(
        texture=128 + rng.uniform(-60, 60, 3) + 50 * _texture(rng, 128),
        centre=rng.uniform(0, width) + 1j * rng.uniform(0, height),
        velocity=rng.uniform(1, 4) * np.exp(2j * np.pi * rng.uniform()),
        axes=(int(rng.integers(20, 50)), int(rng.integers(15, 40))),
        angle=rng.uniform(0, 180)))
  grain = rng.normal(0, 2, (8, height, width, 1)).astype(np.float32)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  mask = np.empty((height, width), np.uint8)
  for t in range(num_frames):
    y, x = (int(v) % TEXTURE for v in (pan.imag * t, pan.real * t))
    frame = background[y:y + height, x:x + width] + grain[t % len(grain)]
    for obj in objects:
      centre = obj['centre'] + obj['velocity'] * t
      x, y = int(centre.real) % width, int(centre.imag) % height
      mask[:] = 0
      cv2.ellipse(mask, (x, y), obj['axes'], obj['angle'], 0, 360, 1, -1)
      rows, cols = np.nonzero(mask)
      frame[rows, cols] = obj['texture'][(rows - y) % 128, (cols - x) % 128]
    frames[t] = np.clip(frame, 0, 255)
  return frames


def write_videos(video_dir, num_classes, videos_per_class, num_frames):
  """`<video_dir>/class<c>/v<i>.avi`, XviD; the paths."""
  paths = []
  for class_index in range(num_classes):
    folder = os.path.join(video_dir, f'class{class_index}')
    os.makedirs(folder)
    for index in range(videos_per_class):
      rng = np.random.default_rng([0, class_index, index])
      path = os.path.join(folder, f'v{index:03d}.avi')
      writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC),
                               VIDEO_FPS, VIDEO_SIZE[::-1])
      if not writer.isOpened():
        raise OSError(f'OpenCV cannot write {FOURCC} to {path}.')
      for frame in scene_frames(rng, num_frames):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
      writer.release()
      paths.append(path)
  return paths


# Runs `prepare` in a fresh interpreter: its `spawn` workers re-import the
# `__main__` module, and this one imports TensorFlow (~4 s per worker).
_PREPARE_CODE = """
import json, sys, time
from trainer.data.prepare import prepare
start = time.perf_counter()
manifest = prepare(**json.loads(sys.argv[1]))
print(json.dumps([manifest.splits['train'].num_clips,
                  time.perf_counter() - start]))
"""


def prepare_videos(video_dir, output_dir, fps, videos_per_class):
  """`prepare(...)` of `video_dir`, all in 'train'; (videos, seconds)."""
  settings = dict(source='folder', video_dir=video_dir, output_dir=output_dir,
                  splits=f'train:{videos_per_class}', fps=fps)
  result = subprocess.run(
      [sys.executable, '-c', _PREPARE_CODE, json.dumps(settings)],
      check=True, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  videos, seconds = json.loads(result.stdout.strip().splitlines()[-1])
  return videos, seconds


def record_sizes(manifest):
  """(mean frames per record, mean JPEG bytes per frame) of 'train'."""
  paths = [manifest.shard_path(s) for s in manifest.split('train').shards]
  frames, jpeg_bytes, records = 0, 0, 0
  for record in tf.data.TFRecordDataset(paths):
    jpegs = schema.parse_clip(record).jpeg_frames
    frames += int(jpegs.shape[0])
    jpeg_bytes += int(tf.reduce_sum(tf.strings.length(jpegs)))
    records += 1
  return frames / records, jpeg_bytes / frames


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


def tutorial_dataset(video_dir):
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


def time_epoch(make_dataset, epoch):
  """(clips, wall s, CPU s, start s) of `make_dataset(epoch)`, whole: from
  making the dataset to its last batch; start: to its first batch."""
  cpu_start, start = cpu_seconds(), time.perf_counter()
  iterator = iter(make_dataset(epoch))
  clips = int(next(iterator)[0].shape[0])
  first = time.perf_counter() - start
  for video, _ in iterator:
    clips += int(video.shape[0])
  return np.array([clips, time.perf_counter() - start,
                   cpu_seconds() - cpu_start, first])


def profile_stages(manifest, sampling, num_clips=64):
  """CPU ms per clip of each stage of `clip_ops.train_clip`, each run alone
  (graph functions, one clip at a time, on this process's threads)."""
  # pylint: disable=import-outside-toplevel
  from trainer.data import clip_ops
  paths = [manifest.shard_path(s) for s in manifest.split('train').shards]
  records = list(tf.data.TFRecordDataset(paths).take(num_clips))
  step, size = sampling.frame_step, sampling.image_size

  @tf.function
  def parse(record):
    return schema.parse_clip(record).jpeg_frames

  @tf.function
  def gather(jpegs):
    indices = clip_ops.sample_frame_indices(tf.shape(jpegs)[0],
                                            NUM_FRAMES, step)
    return tf.gather(jpegs, indices)

  @tf.function
  def decode(jpegs):
    box = tf.constant([24, 32, 192, 256])  # 64 % of the frame
    return tf.stack([tf.io.decode_and_crop_jpeg(jpegs[i], box, channels=3)
                     for i in range(NUM_FRAMES)])

  @tf.function
  def resize(frames):
    frames = tf.image.convert_image_dtype(frames, tf.float32)
    return tf.clip_by_value(tf.image.resize(frames, [size, size]), 0.0, 1.0)

  flip_seed = next(seed for seed in ([0, k] for k in range(100))
                   if tf.random.stateless_uniform([], seed) < 0.5)

  @tf.function
  def flip(video):  # a seed that flips: the cost of half the clips
    return clip_ops.random_flip_clip(video, flip_seed)

  @tf.function
  def train_clip(record):
    return clip_ops.train_clip(record, '', tf.constant(1, tf.int64),
                               sampling, manifest.num_classes)

  stages = {'read (TFRecord, CRC)': 0.0}
  cpu = cpu_seconds()
  for _ in tf.data.TFRecordDataset(paths).take(num_clips):
    pass
  stages['read (TFRecord, CRC)'] = cpu_seconds() - cpu
  steps = [('parse', parse), ('sample, gather', gather),
           ('decode crop windows (64 %)', decode),
           ('to float, resize, clip', resize), ('flip (half the clips)', flip),
           ('batch (copy)', lambda video: tf.stack([video] * BATCH))]
  for record in records[:2]:  # traced and warm
    train_clip(record)
    value = record
    for _, function in steps:
      value = function(value)
  for record in records:
    value = record
    for name, function in steps:
      cpu = cpu_seconds()
      value = function(value)
      stages[name] = stages.get(name, 0.0) + cpu_seconds() - cpu
    cpu = cpu_seconds()
    train_clip(record)
    stages['train_clip, whole'] = stages.get('train_clip, whole', 0.0) + (
        cpu_seconds() - cpu)
  stages['batch (copy)'] /= BATCH  # a batch of BATCH copies of a clip
  stages['flip (half the clips)'] /= 2
  return [(name, 1e3 * seconds / num_clips)
          for name, seconds in stages.items()]


def main():
  args = parse_args()
  logging.set_verbosity(logging.WARNING)
  random.seed(0)
  cores = len(os.sched_getaffinity(0))
  num_videos = args.classes * args.videos
  with tempfile.TemporaryDirectory(prefix='input_pipeline_') as tmp:
    video_dir = os.path.join(tmp, 'videos')
    start = time.perf_counter()
    paths = write_videos(video_dir, args.classes, args.videos, args.frames)
    kbits = 8 * sum(map(os.path.getsize, paths)) / len(paths) / (
        args.frames / VIDEO_FPS) / 1e3
    print(f'\nData: {num_videos} videos x {args.frames} frames, '
          f'{VIDEO_SIZE[1]}x{VIDEO_SIZE[0]} {FOURCC} at {VIDEO_FPS} fps, '
          f'{kbits:.0f} kbit/s, written in {time.perf_counter() - start:.0f} '
          f's; {cores} cores')

    rates = [args.fps] + ([0.0] if args.source_rate else [])
    print('\nPreparation (videos -> TFRecords, JPEG quality 90, '
          f'{os.cpu_count()} workers)')
    print(f'{"fps":>6} {"videos":>7} {"seconds":>8} {"videos/s":>9} '
          f'{"frames/record":>14} {"JPEG KB/frame":>14}')
    manifests = {}
    for fps in rates:
      out = os.path.join(tmp, f'prepared_{fps:g}')
      videos, seconds = prepare_videos(video_dir, out, fps, args.videos)
      manifests[fps] = Manifest.read(out)
      frames, jpeg = record_sizes(manifests[fps])
      print(f'{fps or VIDEO_FPS:>6g} {videos:>7} {seconds:>8.1f} '
            f'{videos / seconds:>9.1f} {frames:>14.1f} {jpeg / 1e3:>14.1f}')

    tutorial = tutorial_dataset(video_dir)
    loaders = {'tutorial': lambda epoch: tutorial}
    for fps in rates:
      name = 'pipeline' if fps == args.fps else '@25fps'
      step = round(CLIP_SECONDS * (fps or VIDEO_FPS))
      sampling = Sampling(num_frames=NUM_FRAMES, frame_step=step,
                          image_size=IMAGE_SIZE)
      loaders[name] = (
          lambda epoch, manifest=manifests[fps], sampling=sampling:
          train_dataset(manifest, 'train', sampling, batch_size=BATCH,
                        seed=0, epoch=epoch))
    for make_dataset in loaders.values():  # TensorFlow's one-time start
      next(iter(make_dataset(args.epochs)))
    totals = {name: np.zeros(4) for name in loaders}
    for epoch in range(args.epochs):
      for name, make_dataset in loaders.items():
        totals[name] += time_epoch(make_dataset, epoch)

    print(f'\nInput: batch {BATCH}, {NUM_FRAMES} frames {CLIP_SECONDS:g} s '
          f'apart, {IMAGE_SIZE}x{IMAGE_SIZE}; {args.epochs} whole epochs '
          'each, interleaved, start-up counted')
    print(f'{"loader":>9} {"clips":>6} {"seconds":>8} {"clips/s":>8} '
          f'{"per core":>9} {"CPU ms/clip":>12} {"start s":>8}')
    rate = {}
    for name, (clips, seconds, cpu, firsts) in totals.items():
      rate[name] = clips / seconds
      print(f'{name:>9} {int(clips):>6} {seconds:>8.2f} {rate[name]:>8.1f} '
            f'{rate[name] / cores:>9.1f} {1e3 * cpu / clips:>12.2f} '
            f'{firsts / args.epochs:>8.3f}')
    ratio = rate['pipeline'] / rate['tutorial']
    per_core = rate['pipeline'] / cores
    cpu_rate = totals['pipeline'][0] / totals['pipeline'][2]
    print(f'\npipeline / tutorial: {ratio:.1f}x '
          f'({"meets" if ratio >= GOAL_RATIO else "BELOW"} the '
          f'{GOAL_RATIO:.0f}x goal)')
    print(f'pipeline per core: {per_core:.0f} clips/s '
          f'({"meets" if per_core >= GOAL_PER_CORE else "BELOW"} the '
          f'{GOAL_PER_CORE:.0f} clips/s goal); per CPU second: '
          f'{cpu_rate:.0f} clips')

    if args.profile:
      sampling = Sampling(num_frames=NUM_FRAMES,
                          frame_step=round(CLIP_SECONDS * args.fps),
                          image_size=IMAGE_SIZE)
      print('\nProfile: CPU ms per clip of each stage alone, records at '
            f'{args.fps:g} fps')
      for stage, ms in profile_stages(manifests[args.fps], sampling):
        print(f'{stage:>28} {ms:>7.2f}')


if __name__ == '__main__':
  main()
