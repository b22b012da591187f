"""The `tf.data` pipeline that turns prepared TFRecord shards into batches.

A prepared directory (written by `movinet-prepare`) holds
`<split>-00000-of-0000N.tfrecord` shards in the layout of `schema.py` and a
`manifest.json` (`manifest.Manifest`):

  manifest = Manifest.read(data_dir)   # prepared with --fps=5
  sampling = Sampling(num_frames=8, frame_step=3, image_size=172)
  train = train_dataset(manifest, 'train', sampling, batch_size=8, seed=0,
                        epoch=0)
  test = eval_dataset(manifest, 'test', sampling, batch_size=8)

`frame_step` counts frames of the prepared videos: at the rate the manifest
records (`manifest.frames.fps`, from `movinet-prepare --fps`), or each
video's own when it was kept. Records prepared at 5 fps hold a fifth of the
frames of 25 fps ones (clips of frames 0.6 s apart, 3 prepared frames, then
start on a 0.2 s grid) and cost a fifth of the reading and parsing
(`benchmarks/input_pipeline.py`).

Two checks guard against shards that are not what the manifest says.
Before anything is written, `Manifest.check_files` checks the label indices
each shard holds (recorded at preparation, so no record is read) and that
every shard file exists with the size recorded. While reading,
`shard_reader.read_shard` stops with one line naming the shard when a
shard ends early (a corrupted or truncated record) or holds more records
than the manifest says, and every clip's label index is asserted to lie in
the manifest's label list (`clip_ops.checked_label`), which also covers
manifests written before label indices were recorded. Those messages name
the shard and say to rerun `movinet-prepare` into a new `--output_dir`;
`movinet-prepare --verify` compares every shard's sha256 with the manifest.

How a record becomes a clip is in `clip_ops`; which records each input
pipeline reads, in `shard_reader`.
"""

import functools
from typing import Any, Optional

import tensorflow as tf

from trainer import settings
from trainer.data import clip_ops
from trainer.data import shard_reader
from trainer.data.manifest import Manifest
from trainer.data.manifest import Shard
from trainer.data.sampling import Sampling

AUTOTUNE = tf.data.AUTOTUNE


def _check_int(owner: str, name: str, value: Any, low: int) -> None:
  """Raises SettingError unless `value` is an int of at least `low`."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise settings.SettingError(owner, name, value, 'must be an int')
  if value < low:
    raise settings.SettingError(owner, name, value, f'must be at least {low}')


def _split_shards(manifest: Manifest, split: str) -> tuple[Shard, ...]:
  """The shards of `split`, which must hold clips and exist."""
  if manifest.data_dir is None:
    raise ValueError('The manifest is bound to no directory; read it with '
                     '`Manifest.read(data_dir)`.')
  shards = manifest.split(split).shards
  manifest.check_present(split)
  return shards


def _epoch_seed(seed: int, epoch: int) -> int:
  """The seed of one epoch; distinct for every (seed, epoch), < 2**63."""
  return (seed * 1_000_003 + epoch) * 1_009


@functools.lru_cache(maxsize=16)
def _train_clip_function(sampling: Sampling, num_classes: int):
  """`clip_ops.train_clip` as one graph function of `(record, path, salt)`,
  traced once for the pipelines of every epoch: tracing it again took ~25
  ms of CPU at each epoch's start (`benchmarks/input_pipeline.py`). Traced
  outside any graph and device scope (those of the first caller, e.g. a
  distribution strategy's, must not stick to it)."""
  function = tf.function(
      lambda record, path, salt: clip_ops.train_clip(
          record, path, salt, sampling, num_classes), autograph=False)
  # tf.init_scope is a contextlib generator, which pylint misreads.
  # pylint: disable-next=not-context-manager
  with tf.init_scope(), tf.device(None):
    return function.get_concrete_function(
        tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string),
        tf.TensorSpec([], tf.int64))


def _batched(clips: tf.data.Dataset, batch_size: int, drop_remainder: bool,
             deterministic: bool) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = deterministic
  return clips.batch(batch_size, drop_remainder=drop_remainder).prefetch(
      AUTOTUNE).with_options(options)


def train_dataset(manifest: Manifest, split: str, sampling: Sampling, *,
                  batch_size: int, seed: int, epoch: int, skip_steps: int = 0,
                  deterministic: bool = False, shuffle_buffer: int = 256,
                  input_context: Optional[tf.distribute.InputContext] = None
                  ) -> tf.data.Dataset:
  """Epoch `epoch` of a resumable training run, as batches of clips.

  Shards are shuffled, read interleaved and records shuffled, all seeded
  by `(seed, epoch)`; each clip is sampled and augmented as `sampling` says
  (`clip_ops.train_clip`), seeded by `(seed, epoch)` and its file name
  (and segment) alone. So the same epoch always holds the same clips in the same
  batches, in the same order, whatever `deterministic` says, iterated any
  number of times; and a clip is augmented the same way wherever it comes
  in the stream: after a resume, and with any number of input pipelines or
  workers. The last partial batch is dropped.

  Args:
    manifest: the prepared directory's manifest (`Manifest.read`).
    split: the split trained on, e.g. 'train'.
    sampling: how clips are sampled and augmented.
    batch_size: the GLOBAL batch size; with `input_context` each pipeline
      batches `input_context.get_per_replica_batch_size(batch_size)`.
    seed: seeds the shuffles and the augmentation of every epoch.
    epoch: the epoch, from 0.
    skip_steps: start `skip_steps` global batches into the epoch, skipping
      their records before any decoding (resuming after preemption); the
      clips after the skip equal those of the epoch read from its start.
    deterministic: keep the order in which clips are decoded fixed
      (`tf.data.Options.deterministic`), at some throughput; the batches
      are the same either way.
    shuffle_buffer: records in the shuffle buffer.
    input_context: from `strategy.distribute_datasets_from_function`: each
      input pipeline reads its part of the shards
      (`shard_reader.assign_shards`), and every pipeline gives the same
      number of batches, the split's clips divided by the global batch,
      repeating or leaving out the few records it has over or under that
      share (`shard_reader.in_step`).

  Returns:
    A dataset of `(video, label)`: video float32 in [0, 1], `(batch,
    num_frames, image_size, image_size, 3)`; label int32 `(batch,)`.

  Raises:
    SettingError: an argument out of its range (named).
    ValueError: a missing or empty split, or a missing shard.
  """
  for name, value, low in (('batch_size', batch_size, 1), ('seed', seed, 0),
                           ('epoch', epoch, 0), ('skip_steps', skip_steps, 0),
                           ('shuffle_buffer', shuffle_buffer, 1)):
    _check_int('train_dataset', name, value, low)
  shards = _split_shards(manifest, split)
  num_pipelines, pipeline_id, pipeline_batch = 1, 0, batch_size
  if input_context is not None:
    pipeline_batch = input_context.get_per_replica_batch_size(batch_size)
    num_pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
  slices = shard_reader.pipeline_slices(shards, num_pipelines, pipeline_id)
  num_records = sum(shard_reader.slice_size(shards[i].num_clips, stride,
                                            offset)
                    for i, stride, offset in slices)
  epoch_seed = _epoch_seed(seed, epoch)
  records = shard_reader.slice_files(manifest, shards, slices).shuffle(
      len(slices), seed=epoch_seed, reshuffle_each_iteration=False
  ).interleave(shard_reader.read_slice, cycle_length=min(len(slices), 8),
               num_parallel_calls=AUTOTUNE, deterministic=True).apply(
                   tf.data.experimental.assert_cardinality(num_records))
  if num_pipelines > 1:
    records = shard_reader.in_step(
        records, num_records, split, pipeline_id, num_pipelines,
        sum(s.num_clips for s in shards), batch_size)
  records = records.shuffle(shuffle_buffer, seed=epoch_seed,
                            reshuffle_each_iteration=False)
  # Every clip's augmentation is seeded by (the epoch's seed, its file name
  # and segment).
  salts = tf.data.Dataset.from_tensors(
      tf.constant(epoch_seed, tf.int64)).repeat()
  records = tf.data.Dataset.zip(records, salts)
  if skip_steps:
    records = records.skip(skip_steps * (batch_size // num_pipelines))
  train_clip = _train_clip_function(sampling, manifest.num_classes)
  clips = records.map(
      lambda shard_record, salt: train_clip(*shard_record, salt),
      # Decoded in a fixed order, so that skipping `skip_steps` batches'
      # records skips exactly those batches.
      num_parallel_calls=AUTOTUNE, deterministic=True)
  return _batched(clips, pipeline_batch, True, deterministic)


def eval_dataset(manifest: Manifest, split: str, sampling: Sampling, *,
                 batch_size: int, clips: int = 1,
                 drop_remainder: bool = False) -> tf.data.Dataset:
  """A split in manifest order, as batches of clips; one pass, no shuffle.

  Each video gives the middle clip, or with `clips > 1` that many clips
  centred in equal parts of it, for averaging predictions over clips;
  frames are centre-cropped or padded as `sampling.eval_resize` says
  (`clip_ops.eval_clip`).

  Args:
    manifest: the prepared directory's manifest (`Manifest.read`).
    split: the split evaluated, e.g. 'test'.
    sampling: how clips are sampled.
    batch_size: clips per batch.
    clips: clips per video.
    drop_remainder: drop the last partial batch (static shapes, for TPUs).

  Returns:
    A dataset of `(video, label)`: video float32 in [0, 1], `(batch,
    num_frames, image_size, image_size, 3)`, or `(batch, clips,
    num_frames, image_size, image_size, 3)` with `clips > 1`; label int32
    `(batch,)`.

  Raises:
    SettingError: an argument out of its range (named).
    ValueError: a missing or empty split, or a missing shard.
  """
  _check_int('eval_dataset', 'batch_size', batch_size, 1)
  _check_int('eval_dataset', 'clips', clips, 1)
  if not isinstance(drop_remainder, bool):
    raise settings.SettingError('eval_dataset', 'drop_remainder',
                                drop_remainder, 'must be a bool')
  shards = _split_shards(manifest, split)
  slices = shard_reader.pipeline_slices(shards, 1, 0)
  records = shard_reader.slice_files(manifest, shards, slices).flat_map(
      shard_reader.read_slice).apply(
          tf.data.experimental.assert_cardinality(
              sum(s.num_clips for s in shards)))
  videos = records.map(
      lambda record, path: clip_ops.eval_clip(
          record, path, sampling, clips, manifest.num_classes),
      num_parallel_calls=AUTOTUNE, deterministic=True)
  return _batched(videos, batch_size, drop_remainder, True)
