"""The training and evaluation inputs of a run, configured by gin.

`build_inputs` reads a prepared directory's manifest once and makes the
distributed datasets for each epoch (see `VideoInputs.train_dataset`).
`synthetic_data_dir` prepares the embedded synthetic dataset into the cache
on first use, for the quickstart.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional

import gin
import tensorflow as tf

from trainer import files
from trainer.data import pipeline
from trainer.data import prepare as prepare_lib


@gin.configurable
def synthetic_data_dir(cache_dir: Optional[str] = None,
                       num_classes: int = 4) -> str:
  """Prepares the synthetic dataset once and returns its directory.

  Several processes may ask at once (see `prepare.prepare_once`). Workers
  with caches of their own each prepare the same data (it is generated from
  a fixed seed).

  Args:
    cache_dir: where to keep it; `$TRAINER_CACHE_DIR` (default
      `~/.cache/movinet-trainer`) if None.
    num_classes: synthetic motion classes (4 translations; up to 6).

  Returns:
    `<cache_dir>/synthetic-<num_classes>`, prepared (a rerun reuses it; an
    interrupted preparation resumes).
  """
  data_dir = os.path.join(files.cache_dir(cache_dir),
                          f'synthetic-{num_classes}')
  prepare_lib.prepare_once(data_dir, source='synthetic',
                           num_classes=num_classes, workers=1)
  return data_dir


@dataclasses.dataclass(frozen=True)
class VideoInputs:
  """Where the clips come from and how they are sampled; see `build_inputs`."""
  data_dir: str
  label_names: tuple[str, ...]
  num_train_clips: int
  dataset_fingerprint: str
  train_split: str
  eval_split: str
  batch_size: int
  eval_batch_size: int
  num_frames: int
  frame_step: int
  image_size: int
  eval_clips: int
  train_resize: str
  eval_resize: str
  eval_drop_remainder: bool
  min_crop_area: float
  flip: bool
  shuffle_buffer: int
  num_workers: int = 1

  @property
  def num_classes(self) -> int:
    return len(self.label_names)

  @property
  def steps_per_epoch(self) -> int:
    """Training steps per epoch: full global batches (the rest is dropped)."""
    return self.num_train_clips // self.batch_size

  def train_dataset(self, strategy: tf.distribute.Strategy, *, seed: int,
                    epoch: int, skip_steps: int = 0, deterministic: bool):
    """Epoch `epoch` of the training clips as per-replica batches.

    The same `(seed, epoch)` always gives the same clips in the same
    batches, and `skip_steps` starts that many steps in, so a resumed run
    trains on exactly the batches an uninterrupted run would.
    """
    return strategy.distribute_datasets_from_function(
        lambda context: pipeline.build_dataset(
            self.data_dir, self.train_split, training=True,
            batch_size=self.batch_size, num_frames=self.num_frames,
            frame_step=self.frame_step, image_size=self.image_size,
            seed=seed, epoch=epoch, skip_steps=skip_steps,
            deterministic=deterministic, train_resize=self.train_resize,
            min_crop_area=self.min_crop_area,
            flip=self.flip, input_context=context,
            shuffle_buffer=self.shuffle_buffer))

  def eval_dataset(self, *, split: Optional[str] = None,
                   eval_clips: Optional[int] = None) -> tf.data.Dataset:
    """The evaluation split in manifest order, global batches (Keras
    distributes it); `eval_clips` per video (defaults to the binding).

    On one machine every replica's share comes from this one pipeline; with
    several workers each one evaluates every `num_workers`-th share.
    """
    dataset = pipeline.build_dataset(
        self.data_dir, split or self.eval_split, training=False,
        batch_size=self.eval_batch_size, num_frames=self.num_frames,
        frame_step=self.frame_step, image_size=self.image_size,
        eval_clips=eval_clips or self.eval_clips,
        eval_resize=self.eval_resize, drop_remainder=self.eval_drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA if self.num_workers > 1
        else tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options)


def _fingerprint(manifest: dict, split: str) -> str:
  """Identifies the labels and the training split's shards (by content).

  Only a shard's file, clip count and sha256 count, so that a manifest that
  also records sizes and label indices keeps the fingerprint of the same
  shards.
  """
  identity_keys = ('file', 'num_clips', 'sha256')
  identity = {'labels': manifest['labels'],
              'shards': [{k: s[k] for k in identity_keys if k in s}
                         for s in manifest['splits'][split]['shards']]}
  return hashlib.sha256(
      json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _check_split(manifest: dict, split: str, binding: str,
                 data_dir: str) -> None:
  splits = manifest['splits']
  if split not in splits:
    raise ValueError(f'{binding}={split!r} is not a split of {data_dir}; it '
                     f'has {sorted(splits)}.')
  if not splits[split]['num_clips']:
    raise ValueError(f'Split {split!r} of {data_dir} has no clips; prepare '
                     'it again with more videos, or bind '
                     f'{binding} to another split.')


@gin.configurable(denylist=['num_replicas', 'num_workers'])
def build_inputs(num_replicas: int = 1,
                 num_workers: int = 1,
                 data_dir: str = gin.REQUIRED,
                 train_split: str = 'train',
                 eval_split: str = 'test',
                 batch_size: int = 8,
                 per_replica_batch_size: Optional[int] = None,
                 eval_batch_size: Optional[int] = None,
                 num_frames: int = 8,
                 frame_step: int = 15,
                 image_size: int = 172,
                 eval_clips: int = 1,
                 train_resize: str = 'crop',
                 eval_resize: str = 'crop',
                 eval_drop_remainder: bool = False,
                 min_crop_area: float = 0.3,
                 flip: bool = True,
                 shuffle_buffer: int = 256) -> VideoInputs:
  """Reads the prepared `data_dir` and fixes how clips are sampled.

  Args:
    num_replicas: replicas of the strategy (set by the run).
    num_workers: machines the replicas are on (set by the run).
    data_dir: a `movinet-prepare --output_dir` (local or gs://), or
      `@synthetic_data_dir()` for the embedded synthetic dataset.
    train_split: split trained on.
    eval_split: split validated on each epoch and evaluated at the end.
    batch_size: GLOBAL training batch, split over the replicas (clips).
    per_replica_batch_size: if set, the global batch is this times the
      replicas (platform files use it: the batch then grows with the slice).
    eval_batch_size: GLOBAL evaluation batch; the global training batch if
      None.
    num_frames: frames per clip.
    frame_step: source frames between sampled frames.
    image_size: clip height and width (pixels).
    eval_clips: clips per video at evaluation, predictions averaged.
    train_resize: 'crop' (a random resized crop of each training clip) or
      'pad' (the whole frame, fitted and padded: the TensorFlow MoViNet
      tutorial's input).
    eval_resize: 'crop' (centre crop) or 'pad' (fit and pad).
    eval_drop_remainder: drop the last partial evaluation batch, for static
      shapes (TPU); its clips are then not evaluated.
    min_crop_area: smallest area fraction of a training crop.
    flip: random horizontal flips in training (turn off when left and right
      are different classes).
    shuffle_buffer: records in the training shuffle buffer.

  The manifest is checked first, before the run writes anything
  (`pipeline.check_manifest`: labels, every shard's recorded label indices
  and file size); records are checked while they are read (see
  `pipeline.build_dataset`).

  Raises:
    ValueError: a missing or unprepared directory, a manifest whose shards
      are missing, of another size than recorded or hold label indices
      outside its labels, a missing or empty split, or a bad sampling
      argument (named).
  """
  manifest = pipeline.read_manifest(data_dir)
  pipeline.check_manifest(data_dir, manifest)
  _check_split(manifest, train_split, 'build_inputs.train_split', data_dir)
  _check_split(manifest, eval_split, 'build_inputs.eval_split', data_dir)
  num_train_clips = manifest['splits'][train_split]['num_clips']
  if train_resize not in pipeline.RESIZE_MODES:
    raise ValueError(f'build_inputs.train_resize={train_resize!r} is not one '
                     f'of {", ".join(pipeline.RESIZE_MODES)}.')
  if per_replica_batch_size is not None:
    batch_size = per_replica_batch_size * num_replicas
  if batch_size % num_replicas:
    raise ValueError(
        f'build_inputs.batch_size={batch_size} (the global batch) must be a '
        f'multiple of the {num_replicas} replicas; or bind '
        'build_inputs.per_replica_batch_size instead.')
  if batch_size < 1 or num_train_clips < batch_size:
    raise ValueError(
        f'build_inputs.batch_size={batch_size} must be between 1 and the '
        f'{num_train_clips} clips of split {train_split!r} in {data_dir}.')
  inputs = VideoInputs(
      data_dir=data_dir, label_names=tuple(manifest['labels']),
      num_train_clips=num_train_clips,
      dataset_fingerprint=_fingerprint(manifest, train_split),
      train_split=train_split, eval_split=eval_split, batch_size=batch_size,
      eval_batch_size=eval_batch_size or batch_size, num_frames=num_frames,
      frame_step=frame_step, image_size=image_size, eval_clips=eval_clips,
      train_resize=train_resize, eval_resize=eval_resize,
      eval_drop_remainder=eval_drop_remainder,
      min_crop_area=min_crop_area, flip=flip,
      shuffle_buffer=shuffle_buffer, num_workers=num_workers)
  # Sampling arguments are checked where they are used; build one dataset
  # now so that a bad binding fails before anything is written.
  inputs.eval_dataset()
  return inputs
