"""Reading a split's shards: which records each input pipeline reads.

With several input pipelines (one per worker or TPU host) each reads its
part of a split (`assign_shards`); in training every pipeline then gives
exactly the same number of records per epoch (`in_step`), so that the
workers stay in step. `read_shard` reads one shard and stops with one line
naming it when it holds other records than the manifest says.
"""

from typing import Sequence

from absl import logging
import tensorflow as tf

from trainer.data import manifest as manifest_lib


# A round of shards is dealt out whole when its sizes differ by at most this
# fraction of the largest (or by one record); see `assign_shards`.
_UNEVEN_ROUND = 0.05


def assign_shards(clips_per_shard: Sequence[int], num_pipelines: int
                  ) -> list[list[tuple[int, int, int]]]:
  """Which records of which shards each input pipeline reads.

  Shards are taken largest first, in rounds of `num_pipelines`. A full round
  of shards of about equal size (see `_UNEVEN_ROUND`) is dealt out whole, one
  shard per pipeline, the largest to the pipeline holding the fewest records
  so far. Every other shard (those of an uneven round, and of the last,
  short round) is shared: every pipeline reads it and keeps every
  `num_pipelines`-th record, the records of all shared shards counted as one
  sequence, so that the pipelines' shares of them differ by one record at
  most. So each pipeline reads its part of the data plus at most a round of
  shards. As `movinet-prepare` writes shards of `--shard_clips` clips and a
  shorter last one, usually only the last round is shared.

  Args:
    clips_per_shard: records in each shard, in manifest order.
    num_pipelines: input pipelines (one per worker or TPU host).

  Returns:
    For each pipeline, a list of `(shard, stride, offset)`: the records
    `offset, offset + stride, ...` of shard number `shard`. Every record is
    in exactly one pipeline's lists.
  """
  order = sorted(range(len(clips_per_shard)),
                 key=lambda shard: (-clips_per_shard[shard], shard))
  loads = [0] * num_pipelines
  slices = [[] for _ in range(num_pipelines)]
  shared = 0  # records of the shared shards so far
  for start in range(0, len(order), num_pipelines):
    round_ = order[start:start + num_pipelines]
    sizes = [clips_per_shard[shard] for shard in round_]
    if len(round_) == num_pipelines and max(sizes) - min(sizes) <= max(
        1, int(_UNEVEN_ROUND * max(sizes))):
      by_load = sorted(range(num_pipelines),
                       key=lambda pipeline: (loads[pipeline], pipeline))
      for shard, pipeline in zip(round_, by_load):
        slices[pipeline].append((shard, 1, 0))
        loads[pipeline] += clips_per_shard[shard]
      continue
    for shard in round_:
      for pipeline in range(num_pipelines):
        offset = (pipeline - shared) % num_pipelines
        if offset < clips_per_shard[shard]:
          slices[pipeline].append((shard, num_pipelines, offset))
      shared += clips_per_shard[shard]
  return slices


def slice_size(num_clips: int, stride: int, offset: int) -> int:
  """Records `offset, offset + stride, ...` of a shard of `num_clips`."""
  return len(range(offset, num_clips, stride))


def pipeline_slices(shards: Sequence[manifest_lib.Shard], num_pipelines: int,
                    pipeline_id: int) -> list[tuple[int, int, int]]:
  """The `(shard, stride, offset)` slices one input pipeline reads.

  One pipeline reads every shard whole, in manifest order; several share
  them out as `assign_shards` says.
  """
  if num_pipelines == 1:
    return [(index, 1, 0) for index in range(len(shards))]
  return assign_shards([s.num_clips for s in shards],
                       num_pipelines)[pipeline_id]


def slice_files(manifest: manifest_lib.Manifest,
                shards: Sequence[manifest_lib.Shard],
                slices: Sequence[tuple[int, int, int]]) -> tf.data.Dataset:
  """A dataset of `(path, num_clips, stride, offset)`, one per slice.

  `read_slice` turns each into the slice's records.
  """
  return tf.data.Dataset.from_tensor_slices((
      [manifest.shard_path(shards[i]) for i, _, _ in slices],
      [shards[i].num_clips for i, _, _ in slices],
      tf.constant([stride for _, stride, _ in slices], tf.int64),
      tf.constant([offset for _, _, offset in slices], tf.int64)))


def read_slice(path, num_clips, stride, offset) -> tf.data.Dataset:
  """The records `offset, offset + stride, ...` of a shard, as `read_shard`
  gives them."""
  return read_shard(path, num_clips).shard(stride, offset)


def in_step(records: tf.data.Dataset, num_records: int, split: str,
            pipeline_id: int, num_pipelines: int, split_clips: int,
            global_batch_size: int) -> tf.data.Dataset:
  """Exactly one epoch's share of `records` for this input pipeline.

  Every pipeline must give the same number of batches, or the workers fall
  out of step at a collective op: an epoch is `split_clips //
  global_batch_size` steps (as on one machine), each taking
  `global_batch_size // num_pipelines` records from every pipeline. A
  pipeline with more records leaves the last ones out (files are shuffled
  each epoch, so not always the same); one with fewer repeats its first
  ones.

  Raises:
    ValueError: this pipeline has no record at all.
  """
  needed = (split_clips // global_batch_size) * (
      global_batch_size // num_pipelines)
  if not num_records:
    raise ValueError(
        f'Input pipeline {pipeline_id} of {num_pipelines} gets no record of '
        f'split {split!r} ({split_clips} clips); prepare more clips or use '
        'fewer workers.')
  if num_records != needed:
    logging.info(
        'Input pipeline %d of %d: %d records of split %r, %d per epoch (%s '
        '%d), so that every worker takes the same steps.', pipeline_id,
        num_pipelines, num_records, split, needed,
        'repeating' if needed > num_records else 'leaving out',
        abs(needed - num_records))
  if needed > num_records:
    records = records.repeat()
  return records.take(needed).apply(
      tf.data.experimental.assert_cardinality(needed))


def read_shard(path, num_clips) -> tf.data.Dataset:
  """The records of one shard, each as `(record, path)`.

  A shard that ends early (a corrupted or truncated record: TensorFlow's
  reader stops the file at the first bad record, and `ignore_errors` logs
  its error) or holds more records than its `num_clips` stops the dataset
  with an InvalidArgumentError whose assertion names the shard and the fix.

  Args:
    path: string scalar, the shard file.
    num_clips: int scalar, its records according to the manifest.
  """
  records = tf.data.TFRecordDataset(path).ignore_errors(log_warning=True)
  end = tf.data.Dataset.from_tensors((tf.constant(''), False))
  records = records.map(lambda record: (record, True)).concatenate(end)

  def check_count(index, record, is_record):
    complete = tf.logical_or(
        tf.logical_and(is_record, index < tf.cast(num_clips, tf.int64)),
        tf.equal(index, tf.cast(num_clips, tf.int64)))
    message = tf.strings.join([
        'Shard ', path, ' does not hold the ',
        tf.strings.as_string(num_clips), ' records its manifest lists (a '
        'corrupted, truncated or replaced file); ',
        manifest_lib.REPAIR_HINT, '.'])
    with tf.control_dependencies([tf.debugging.Assert(complete, [message])]):
      return tf.identity(record), is_record

  return records.enumerate().map(
      lambda index, pair: check_count(index, *pair)).filter(
          lambda record, is_record: is_record).map(
              lambda record, is_record: (record, path))
