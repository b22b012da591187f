"""The `tf.data` pipeline that turns prepared TFRecord shards into batches.

A prepared directory (written by `movinet-prepare`) holds
`<split>-00000-of-0000N.tfrecord` shards in the layout of `schema.py` and a
`manifest.json`; the reader needs only its `labels` and, per split, the
`shards` list of `{"file", "num_clips"}`.

Two checks guard against shards that are not what the manifest says.
Before anything is written, `check_manifest` checks the manifest's labels,
the label indices each shard holds (recorded at preparation, so no record is
read) and that every shard file exists with the size recorded. While
reading, `_read_shard` stops with one line naming the shard when a shard
ends early (a corrupted or truncated record) or holds more records than the
manifest says, and every clip's label index is asserted to lie in the
manifest's label list, which also covers manifests written before label
indices were recorded. Those messages name the shard and say to rerun
`movinet-prepare` into a new `--output_dir`; `movinet-prepare --verify`
compares every shard's sha256 with the manifest.

The per-clip ops (`sample_frame_indices`, `decode_frames`,
`decode_random_crop_clip`, `random_flip_clip`,
`center_crop_clip`, `pad_clip`) are plain TensorFlow functions: they run
eagerly and inside `Dataset.map` alike.
"""

import json
import os
from typing import Any, Optional, Sequence

from absl import logging
import tensorflow as tf

from trainer.data import schema

AUTOTUNE = tf.data.AUTOTUNE
RESIZE_MODES = ('crop', 'pad')
_PREPARE_HINT = 'run `movinet-prepare --output_dir=%s` to prepare it'
_REPAIR_HINT = ('rerun `movinet-prepare` with the same flags into a new '
                '--output_dir to repair it')


def _prepare_error(what: str, data_dir: str) -> ValueError:
  return ValueError(f'{what}; {_PREPARE_HINT % data_dir}.')


def read_manifest(data_dir: str) -> dict[str, Any]:
  """Reads `manifest.json` of a prepared directory (local or `gs://`).

  Args:
    data_dir: the `--output_dir` given to `movinet-prepare`.

  Returns:
    The manifest as a dict; `labels` and `splits` are guaranteed present.

  Raises:
    ValueError: `data_dir` or its manifest is missing or lacks those keys.
  """
  if not tf.io.gfile.isdir(data_dir):
    raise _prepare_error(f'data_dir={data_dir!r} is not a directory', data_dir)
  path = os.path.join(data_dir, schema.MANIFEST_NAME)
  if not tf.io.gfile.exists(path):
    raise _prepare_error(f'No manifest at {path!r}', data_dir)
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      manifest = json.load(f)
    except json.JSONDecodeError as error:
      raise _prepare_error(f'Manifest {path!r} is not valid JSON ({error})',
                           data_dir) from error
  for key in ('labels', 'splits'):
    if key not in manifest:
      raise _prepare_error(f'Manifest {path!r} lacks the key {key!r}', data_dir)
  return manifest


def check_manifest(data_dir: str, manifest: dict[str, Any]) -> None:
  """Checks a manifest and its shard files without reading a record.

  Checks that `labels` is a non-empty list of distinct names; that every
  split lists shards with a `file` and a `num_clips`; that the label indices
  recorded for each shard (`label_indices`, see `schema.SHARD_KEYS`) lie in
  the label list; and that every shard file exists with the recorded `size`.
  A manifest written before sizes were recorded gets one warning and no size
  check; one without label indices is checked record by record while
  reading (see `build_dataset`).

  Args:
    data_dir: the prepared directory (local or `gs://`).
    manifest: its manifest, as `read_manifest` returns it.

  Raises:
    ValueError: the first problem found, naming the shard and the fix.
  """
  path = os.path.join(data_dir, schema.MANIFEST_NAME)
  labels = manifest['labels']
  if (not isinstance(labels, list) or not labels
      or len(set(map(str, labels))) != len(labels)):
    raise _prepare_error(f'Manifest {path!r} has labels={labels!r}; they must '
                         'be a non-empty list of distinct names', data_dir)
  unsized = 0
  for split, entry in manifest['splits'].items():
    for shard in entry.get('shards', []):
      if not isinstance(shard.get('file'), str) or not isinstance(
          shard.get('num_clips'), int):
        raise _prepare_error(f'Manifest {path!r} lists a shard of split '
                             f'{split!r} without file or num_clips: {shard}',
                             data_dir)
      shard_path = os.path.join(data_dir, shard['file'])
      outside = [i for i in shard.get('label_indices', [])
                 if not 0 <= i < len(labels)]
      if outside:
        raise ValueError(
            f'Shard {shard_path} holds label indices {outside}, outside the '
            f'{len(labels)} labels of {path}; {_REPAIR_HINT}.')
      if not tf.io.gfile.exists(shard_path):
        raise ValueError(f'Shard {shard_path} listed in {path} is missing; '
                         f'{_REPAIR_HINT}.')
      if 'size' not in shard:
        unsized += 1
        continue
      size = tf.io.gfile.stat(shard_path).length
      if size != shard['size']:
        raise ValueError(
            f'Shard {shard_path} has {size} bytes, but {path} records '
            f'{shard["size"]} (truncated or replaced); {_REPAIR_HINT}.')
  if unsized:
    logging.warning(
        '%s records no size for %d shard(s) (prepared by an older version); '
        'their sizes are not checked.', path, unsized)


def _split_shards(data_dir: str, manifest: dict[str, Any],
                  split: str) -> list[dict[str, Any]]:
  """The manifest's shard entries of `split`, each with its full `path`."""
  splits = manifest['splits']
  if split not in splits:
    path = os.path.join(data_dir, schema.MANIFEST_NAME)
    raise _prepare_error(
        f'split={split!r} is not in {path!r} (it has {sorted(splits)})',
        data_dir)
  shards = [dict(s, path=os.path.join(data_dir, s['file']))
            for s in splits[split]['shards']]
  if not shards:
    raise _prepare_error(f'split={split!r} of {data_dir!r} lists no shards',
                         data_dir)
  missing = [s['path'] for s in shards if not tf.io.gfile.exists(s['path'])]
  if missing:
    raise _prepare_error(
        f'{len(missing)} shard(s) of split={split!r} listed in the manifest '
        f'are missing: {missing}', data_dir)
  return shards


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


def _slice_size(num_clips: int, stride: int, offset: int) -> int:
  return len(range(offset, num_clips, stride))


def _in_step(records: tf.data.Dataset, num_records: int, split: str,
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


def sample_frame_indices(num_available, num_frames: int, frame_step: int,
                         start=0) -> tf.Tensor:
  """Indices of `num_frames` frames spaced `frame_step` apart from `start`.

  Videos shorter than the clip LOOP: indices wrap modulo `num_available`, so a
  clip is always `num_frames` long and keeps its temporal spacing (a looped
  video reads as a periodic action, which suits short action clips better than
  repeating the last frame).

  Args:
    num_available: int scalar, frames in the video.
    num_frames: frames per clip.
    frame_step: distance between sampled frames, in frames.
    start: int scalar, or `(clips,)` for several clips.

  Returns:
    int32 `(num_frames,)`, or `(clips, num_frames)` when `start` is a vector.
  """
  start = tf.cast(start, tf.int32)
  offsets = tf.range(num_frames, dtype=tf.int32) * frame_step
  if start.shape.rank:
    start = tf.expand_dims(start, -1)
  indices = start + offsets
  return indices % tf.cast(num_available, tf.int32)


def _clip_span(num_frames: int, frame_step: int) -> int:
  """Frames from the first to the last sampled frame, both included."""
  return (num_frames - 1) * frame_step + 1


def _eval_starts(num_available, num_frames: int, frame_step: int,
                 num_clips: int) -> tf.Tensor:
  """Starts of `num_clips` clips centred in equal parts of the video.

  With one clip this is the middle clip; videos shorter than a clip start at 0.
  """
  slack = tf.maximum(
      tf.cast(num_available, tf.int32) - _clip_span(num_frames, frame_step), 0)
  parts = 2 * tf.range(num_clips, dtype=tf.int32) + 1
  return parts * slack // (2 * num_clips)


def decode_frames(jpeg_frames, indices) -> tf.Tensor:
  """Decodes only the JPEGs at `indices`.

  Args:
    jpeg_frames: string `(frames,)`, one JPEG per frame.
    indices: int `(clip_frames,)` (any shape; the result follows it).

  Returns:
    uint8 `(*indices.shape, height, width, 3)`.
  """
  indices = tf.convert_to_tensor(indices)
  gathered = tf.reshape(tf.gather(jpeg_frames, indices), [-1])
  frames = tf.map_fn(
      lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), gathered,
      fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  return tf.reshape(
      frames, tf.concat([tf.shape(indices), tf.shape(frames)[1:]], 0))


def _sample_crop_box(image_shape, seed, min_crop_area: float,
                     aspect_ratio_range: Sequence[float]):
  """Samples one Inception-style crop box of an image of `image_shape`.

  Args:
    image_shape: int32 `(3,)`, `(height, width, channels)` of the frames.
    seed: int `(2,)` stateless seed; equal seeds give equal boxes.
    min_crop_area: smallest fraction of the frame's area the box may cover.
    aspect_ratio_range: (min, max) width / height of the box.

  Returns:
    `(begin, box_size)`, int32 `(2,)` each: `(y, x)` and `(height, width)`.
  """
  begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape,
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.0,
      aspect_ratio_range=list(aspect_ratio_range),
      area_range=[min_crop_area, 1.0], max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  return begin[:2], box_size[:2]


def _resize_clip(frames, size: int) -> tf.Tensor:
  """float32 `(frames, size, size, 3)` in [0, 1] from uint8 or float frames."""
  frames = tf.image.convert_image_dtype(frames, tf.float32)
  resized = tf.image.resize(frames, [size, size])
  return tf.clip_by_value(resized, 0.0, 1.0)


def decode_random_crop_clip(jpeg_frames, indices, seed, *, size: int,
                            min_crop_area: float = 0.3,
                            aspect_ratio_range: Sequence[float] = (3 / 4,
                                                                   4 / 3)
                           ) -> tf.Tensor:
  """Decodes only one random box of the JPEGs at `indices` and resizes it.

  The box (Inception-style) covers `min_crop_area`..1 of the frame's area
  with an aspect ratio in `aspect_ratio_range`; the same box is used for all
  frames so that motion stays coherent. Only the box is decoded
  (`tf.io.decode_and_crop_jpeg`), and converted to float after cropping.
  All frames must share the size of `jpeg_frames[0]`, as prepared videos do.

  Args:
    jpeg_frames: string `(frames,)`, one JPEG per frame.
    indices: int `(clip_frames,)`, the frames of the clip.
    seed: int `(2,)` stateless seed; equal seeds give equal boxes.
    size: output height and width, in pixels.
    min_crop_area: smallest fraction of the frame's area the box may cover.
    aspect_ratio_range: (min, max) width / height of the box.

  Returns:
    float32 `(clip_frames, size, size, 3)` in [0, 1].
  """
  jpeg_frames = tf.convert_to_tensor(jpeg_frames)
  height_width = tf.io.extract_jpeg_shape(jpeg_frames[0])[:2]
  begin, box_size = _sample_crop_box(tf.concat([height_width, [3]], 0), seed,
                                     min_crop_area, aspect_ratio_range)
  crop_window = tf.concat([begin, box_size], 0)  # (y, x, height, width)
  cropped = tf.map_fn(
      lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, crop_window, channels=3),
      tf.gather(jpeg_frames, indices),
      fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  return _resize_clip(cropped, size)


def random_flip_clip(frames, seed) -> tf.Tensor:
  """Mirrors the whole `(frames, height, width, 3)` clip left-right, p=0.5."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(frames, [2]), lambda: frames)


def center_crop_clip(frames, *, size: int) -> tf.Tensor:
  """Resizes the short side to `size`, then takes the central square.

  Args:
    frames: `(frames, height, width, 3)`, uint8 or float in [0, 1].
    size: output height and width, in pixels.

  Returns:
    float32 `(frames, size, size, 3)` in [0, 1].
  """
  frames = tf.image.convert_image_dtype(frames, tf.float32)
  hw = tf.cast(tf.shape(frames)[1:3], tf.float32)
  scale = size / tf.reduce_min(hw)
  new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), size)
  resized = tf.image.resize(frames, new_hw)
  top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
  cropped = resized[:, top:top + size, left:left + size, :]
  return tf.clip_by_value(cropped, 0.0, 1.0)


def pad_clip(frames, *, size: int) -> tf.Tensor:
  """Resizes the whole frame to fit `size` x `size` and pads with black.

  What `tf.image.resize_with_pad` does to each frame in the TensorFlow MoViNet
  tutorial: nothing is cropped, the aspect ratio is kept.

  Args:
    frames: `(frames, height, width, 3)`, uint8 or float in [0, 1].
    size: output height and width, in pixels.

  Returns:
    float32 `(frames, size, size, 3)` in [0, 1].
  """
  frames = tf.image.convert_image_dtype(frames, tf.float32)
  padded = tf.image.resize_with_pad(frames, size, size)
  return tf.clip_by_value(padded, 0.0, 1.0)


def _check_positive(**values) -> None:
  for name, value in values.items():
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'{name}={value!r} is not allowed; it must be an int '
                       f'>= 1. Fix the {name} argument (or its gin binding).')


def _check_arguments(batch_size, num_frames, frame_step, image_size,
                     eval_clips, shuffle_buffer, train_resize, eval_resize,
                     min_crop_area) -> None:
  """Raises ValueError naming the first argument out of its range."""
  _check_positive(batch_size=batch_size, num_frames=num_frames,
                  frame_step=frame_step, image_size=image_size,
                  eval_clips=eval_clips, shuffle_buffer=shuffle_buffer)
  for name, value in (('train_resize', train_resize),
                      ('eval_resize', eval_resize)):
    if value not in RESIZE_MODES:
      raise ValueError(f'{name}={value!r} is not allowed; use one of '
                       f'{RESIZE_MODES} (the {name} argument).')
  if not 0.0 < min_crop_area <= 1.0:
    raise ValueError(f'min_crop_area={min_crop_area!r} is not allowed; it must'
                     ' lie in (0, 1] (the min_crop_area argument).')


def build_dataset(data_dir: str,
                  split: str,
                  *,
                  training: bool,
                  batch_size: int,
                  num_frames: int = 8,
                  frame_step: int = 15,
                  image_size: int = 172,
                  seed: Optional[int] = None,
                  deterministic: bool = False,
                  eval_clips: int = 1,
                  train_resize: str = 'crop',
                  eval_resize: str = 'crop',
                  min_crop_area: float = 0.3,
                  flip: bool = True,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  shuffle_buffer: int = 256,
                  drop_remainder: Optional[bool] = None,
                  epoch: Optional[int] = None,
                  skip_steps: int = 0) -> tf.data.Dataset:
  """Batches of `(video, label)` from a prepared directory; one pass, no repeat.

  Training: shards are shuffled, read interleaved and records shuffled; each
  clip takes `num_frames` frames `frame_step` apart from a random start
  (short videos loop, see `sample_frame_indices`); one random resized crop
  for the whole clip, of which only the box of those JPEGs is decoded
  (`decode_random_crop_clip`), or with `train_resize='pad'` the whole frames
  fitted and padded (`pad_clip`, the TensorFlow MoViNet tutorial's
  training input); and (if `flip`) a horizontal flip of the whole clip.

  Evaluation: files in manifest order, no shuffling. Each clip is the middle
  window of the video; `eval_clips > 1` takes that many clips centred in equal
  parts of the video, for averaging predictions over clips. Frames are resized
  so the short side is `image_size` and centre-cropped (`eval_resize='crop'`),
  or resized to fit and zero-padded (`'pad'`, as in the TensorFlow MoViNet
  tutorial).

  Args:
    data_dir: the `--output_dir` of `movinet-prepare` (local or `gs://`).
    split: a split of the manifest, e.g. 'train' or 'test'.
    training: random sampling and augmentation if True.
    batch_size: the GLOBAL batch size; with `input_context` each pipeline
      batches `input_context.get_per_replica_batch_size(batch_size)`.
    num_frames: frames per clip.
    frame_step: distance between sampled frames, in source frames.
    image_size: output height and width, in pixels.
    seed: seeds file and record shuffling and augmentation; None is random.
    deterministic: keep element order fixed (`tf.data.Options.deterministic`).
      With a `seed` this makes the dataset reproducible, at some throughput.
    eval_clips: clips per video at evaluation.
    train_resize: 'crop' (random resized crop) or 'pad' (whole frame,
      fitted and padded), see above.
    eval_resize: 'crop' or 'pad', see above.
    min_crop_area: smallest fraction of a frame's area the training crop covers
      (0.3 keeps most of the action in view on small datasets; Inception's
      0.08 is too aggressive for short videos).
    flip: randomly mirror training clips.
    input_context: from `strategy.distribute_datasets_from_function`: each
      input pipeline reads its part of the shards (`assign_shards`). In
      training every pipeline then gives the same number of batches, the
      split's clips divided by the global batch, repeating or leaving out
      the few records it has over or under that share (`_in_step`).
    shuffle_buffer: records in the training shuffle buffer.
    drop_remainder: drop the last partial batch; defaults to `training`.
    epoch: training only: makes the dataset epoch `epoch` of a resumable run.
      Shuffles and augmentation are seeded from `(seed, epoch)` and do not
      change between iterations, and records are read in a fixed order, so
      the same epoch always holds the same clips in the same batches, in the
      same order (whatever `deterministic` says). A clip's augmentation
      depends only on `(seed, epoch)` and its file name, not on the input
      pipeline or position that reads it. Needs a `seed`.
    skip_steps: training only: start `skip_steps` global batches into the
      epoch, skipping their records before any decoding (resuming after
      preemption). Each clip keeps its own augmentation seed, so the clips
      after the skip equal those of an epoch read from its start.

  Returns:
    A dataset of `(video, label)`: video float32 in [0, 1],
    `(batch, num_frames, image_size, image_size, 3)`, or
    `(batch, eval_clips, num_frames, image_size, image_size, 3)` when
    evaluating with `eval_clips > 1`; label int32 `(batch,)`.

  Raises:
    ValueError: a bad argument, or a missing directory, manifest, split or
      shard.
  """
  _check_arguments(batch_size, num_frames, frame_step, image_size, eval_clips,
                   shuffle_buffer, train_resize, eval_resize, min_crop_area)
  _check_resume_arguments(training, seed, epoch, skip_steps)
  global_batch_size = batch_size
  manifest = read_manifest(data_dir)
  shards = _split_shards(data_dir, manifest, split)
  num_classes = len(manifest['labels'])
  if drop_remainder is None:
    drop_remainder = training
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
    num_pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
  else:
    num_pipelines, pipeline_id = 1, 0

  if num_pipelines == 1:
    slices = [(index, 1, 0) for index in range(len(shards))]
  else:
    slices = assign_shards([s['num_clips'] for s in shards],
                           num_pipelines)[pipeline_id]
  num_clips = sum(_slice_size(shards[i]['num_clips'], stride, offset)
                  for i, stride, offset in slices)
  files = tf.data.Dataset.from_tensor_slices((
      [shards[i]['path'] for i, _, _ in slices],
      [shards[i]['num_clips'] for i, _, _ in slices],
      tf.constant([stride for _, stride, _ in slices], tf.int64),
      tf.constant([offset for _, _, offset in slices], tf.int64)))

  def read_slice(path, count, stride, offset):
    return _read_shard(path, count).shard(stride, offset)

  if training:
    files = files.shuffle(len(slices), seed=_epoch_seed(seed, epoch),
                          reshuffle_each_iteration=epoch is None)
    records = files.interleave(
        read_slice, cycle_length=min(len(slices), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic or epoch is not None)
  else:
    records = files.flat_map(read_slice)
  records = records.apply(tf.data.experimental.assert_cardinality(num_clips))
  if training and num_pipelines > 1:
    records = _in_step(records, num_clips, split, pipeline_id, num_pipelines,
                       sum(s['num_clips'] for s in shards), global_batch_size)

  if training:
    records = records.shuffle(shuffle_buffer, seed=_epoch_seed(seed, epoch),
                              reshuffle_each_iteration=epoch is None)
    # A clip's augmentation seed is (salt, hash of its file name). In an
    # epoch of a resumable run the salt is the epoch's, so a clip is
    # augmented the same way wherever it comes in the stream: after a resume,
    # and with any number of input pipelines or workers. Otherwise each
    # element draws a salt, new on every pass.
    if epoch is None:
      salts = tf.data.Dataset.random(seed=_epoch_seed(seed, None, pipeline_id),
                                     rerandomize_each_iteration=True)
    else:
      salts = tf.data.Dataset.from_tensors(
          tf.constant(_epoch_seed(seed, epoch), tf.int64)).repeat()
    records = tf.data.Dataset.zip(records, salts)
    if skip_steps:
      records = records.skip(skip_steps * (global_batch_size // num_pipelines))
    clips = records.map(
        lambda shard_record, salt: _train_clip(
            *shard_record, salt, num_frames, frame_step, image_size,
            train_resize, min_crop_area, flip, num_classes),
        # A resumable epoch keeps its batches' composition fixed, so that
        # skipping `skip_steps` batches' records skips exactly those batches.
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic or epoch is not None)
  else:
    clips = records.map(
        lambda record, path: _eval_clip(
            record, path, num_frames, frame_step, image_size, eval_clips,
            eval_resize, num_classes),
        num_parallel_calls=AUTOTUNE, deterministic=True)

  options = tf.data.Options()
  options.deterministic = deterministic or not training
  return clips.batch(batch_size, drop_remainder=drop_remainder).prefetch(
      AUTOTUNE).with_options(options)


def _read_shard(path, num_clips) -> tf.data.Dataset:
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
        'corrupted, truncated or replaced file); ', _REPAIR_HINT, '.'])
    with tf.control_dependencies([tf.debugging.Assert(complete, [message])]):
      return tf.identity(record), is_record

  return records.enumerate().map(
      lambda index, pair: check_count(index, *pair)).filter(
          lambda record, is_record: is_record).map(
              lambda record, is_record: (record, path))


def _checked_label(clip, path, num_classes: int) -> tf.Tensor:
  """The clip's label as int32, asserted to index the manifest's labels."""
  label = clip['label']
  in_range = tf.logical_and(label >= 0, label < num_classes)
  message = tf.strings.join([
      'Shard ', path, ' holds label index ', tf.strings.as_string(label),
      ' (video ', clip['filename'], f'), outside the {num_classes} labels '
      'of its manifest; ', _REPAIR_HINT, '.'])
  with tf.control_dependencies([tf.debugging.Assert(in_range, [message])]):
    return tf.cast(tf.identity(label), tf.int32)


def _check_resume_arguments(training, seed, epoch, skip_steps) -> None:
  if epoch is None and skip_steps:
    raise ValueError(f'skip_steps={skip_steps} needs an `epoch`: only an '
                     'epoch of a resumable run has a fixed order to skip in.')
  if epoch is not None and (not training or seed is None):
    raise ValueError(f'epoch={epoch} needs training=True and a seed (got '
                     f'training={training}, seed={seed}).')
  if epoch is not None and (epoch < 0 or skip_steps < 0):
    raise ValueError(f'epoch={epoch} and skip_steps={skip_steps} must be >= 0.')


def _epoch_seed(seed: Optional[int], epoch: Optional[int],
                pipeline_id: int = 0) -> Optional[int]:
  """A seed for one epoch and input pipeline; `seed` itself for epoch None."""
  if seed is None:
    return None
  if epoch is None:
    return seed + pipeline_id
  # Distinct for every (seed, epoch, pipeline) a run can reach; < 2**63.
  return (seed * 1_000_003 + epoch) * 1_009 + pipeline_id


def _train_clip(record, path, salt, num_frames, frame_step, image_size,
                train_resize, min_crop_area, flip, num_classes):
  """One training `(video (num_frames, size, size, 3), label)` pair."""
  clip = schema.parse_clip(record)
  element_seed = tf.stack(
      [salt, tf.strings.to_hash_bucket_fast(clip['filename'], 2**62)])
  start_seed, crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(element_seed, 3))
  num_available = tf.shape(clip['jpeg_frames'])[0]
  slack = tf.maximum(num_available - _clip_span(num_frames, frame_step), 0)
  start = tf.random.stateless_uniform([], start_seed, minval=0,
                                      maxval=slack + 1, dtype=tf.int32)
  indices = sample_frame_indices(num_available, num_frames, frame_step, start)
  if train_resize == 'pad':
    video = pad_clip(decode_frames(clip['jpeg_frames'], indices),
                     size=image_size)
  else:
    video = decode_random_crop_clip(clip['jpeg_frames'], indices, crop_seed,
                                    size=image_size,
                                    min_crop_area=min_crop_area)
  if flip:
    video = random_flip_clip(video, flip_seed)
  video = tf.ensure_shape(video, [num_frames, image_size, image_size, 3])
  return video, _checked_label(clip, path, num_classes)


def _eval_clip(record, path, num_frames, frame_step, image_size, eval_clips,
               eval_resize, num_classes):
  """One evaluation pair; video gains a leading clip axis if eval_clips > 1."""
  clip = schema.parse_clip(record)
  num_available = tf.shape(clip['jpeg_frames'])[0]
  starts = _eval_starts(num_available, num_frames, frame_step, eval_clips)
  indices = sample_frame_indices(num_available, num_frames, frame_step, starts)
  frames = decode_frames(clip['jpeg_frames'], tf.reshape(indices, [-1]))
  if eval_resize == 'crop':
    video = center_crop_clip(frames, size=image_size)
  else:
    video = pad_clip(frames, size=image_size)
  shape = [num_frames, image_size, image_size, 3]
  if eval_clips > 1:
    shape = [eval_clips] + shape
  return tf.reshape(video, shape), _checked_label(clip, path, num_classes)
