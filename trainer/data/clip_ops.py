"""The operations that turn one prepared record into a clip.

`train_clip` and `eval_clip` parse a record (`schema.parse_clip`), pick the
frames of the clip (`sample_frame_indices`), decode only those JPEGs and
resize them as a `sampling.Sampling` says. The pieces (`decode_frames`,
`decode_random_crop_clip`, `random_flip_clip`, `center_crop_clip`,
`pad_clip`) are plain TensorFlow functions: they run eagerly and inside
`Dataset.map` alike.
"""

from typing import Sequence

import tensorflow as tf

from trainer.data import manifest as manifest_lib
from trainer.data import schema
from trainer.data.sampling import Sampling


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
    frame_step: distance between sampled frames, in frames (of the
      prepared video).
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


def _decode_each(decode, jpegs) -> tf.Tensor:
  """`decode` of every JPEG of string `(frames,)`, stacked.

  With `frames` known when traced (as clips are), one decoding op per frame:
  they run in parallel, without a loop's bookkeeping; else a `tf.map_fn`.
  Either way uint8 `(frames, height, width, 3)`, the same values.
  """
  if jpegs.shape[0] is not None:
    return tf.stack([decode(jpegs[i]) for i in range(jpegs.shape[0])])
  return tf.map_fn(decode, jpegs,
                   fn_output_signature=tf.TensorSpec([None, None, 3],
                                                     tf.uint8))


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
  frames = _decode_each(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3),
                        gathered)
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
  cropped = _decode_each(
      lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, crop_window, channels=3),
      tf.gather(jpeg_frames, indices))
  return _resize_clip(cropped, size)


def _mirrored(frames) -> tf.Tensor:
  """`tf.reverse(frames, [2])` of `(frames, height, width, channels)`, as
  one reversal of `(frames * height, width, channels)` rows: the same
  values, in half the CPU time of reversing the 4-D tensor."""
  shape = tf.shape(frames)
  rows = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
  return tf.reshape(tf.reverse(rows, [1]), shape)


def random_flip_clip(frames, seed) -> tf.Tensor:
  """Mirrors the whole `(frames, height, width, 3)` clip left-right, p=0.5."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: _mirrored(frames), lambda: frames)


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
  tutorial: nothing is cropped, the aspect ratio is kept. Takes and gives
  what `center_crop_clip` does: `(frames, height, width, 3)`, uint8 or
  float in [0, 1], to float32 `(frames, size, size, 3)` in [0, 1].
  """
  frames = tf.image.convert_image_dtype(frames, tf.float32)
  padded = tf.image.resize_with_pad(frames, size, size)
  return tf.clip_by_value(padded, 0.0, 1.0)


def checked_label(clip: schema.ParsedClip, path,
                  num_classes: int) -> tf.Tensor:
  """The clip's label as int32, asserted to index the manifest's labels.

  Args:
    clip: as `schema.parse_clip` returns it.
    path: string scalar, the shard it came from (named in the error).
    num_classes: labels in the manifest.
  """
  label = clip.label
  in_range = tf.logical_and(label >= 0, label < num_classes)
  message = tf.strings.join([
      'Shard ', path, ' holds label index ', tf.strings.as_string(label),
      ' (video ', clip.filename, f'), outside the {num_classes} labels '
      'of its manifest; ', manifest_lib.REPAIR_HINT, '.'])
  with tf.control_dependencies([tf.debugging.Assert(in_range, [message])]):
    return tf.cast(tf.identity(label), tf.int32)


def train_clip(record, path, salt, sampling: Sampling, num_classes: int):
  """One training `(video, label)` pair of a serialized record.

  The clip takes `num_frames` frames `frame_step` apart from a random start
  (short videos loop); one random resized crop for the whole clip, of which
  only the box is decoded, or with `train_resize='pad'` the whole frames
  fitted and padded; and (if `flip`) a horizontal flip of the whole clip.
  Its randomness is seeded by `(salt, hash of its file name)` alone (of
  `name#k` for segment k > 0 of a long video).

  Args:
    record: string scalar, a serialized clip.
    path: string scalar, its shard (named in errors).
    salt: int64 scalar, this epoch's seed.
    sampling: how clips are sampled.
    num_classes: labels in the manifest.

  Returns:
    video float32 `(num_frames, image_size, image_size, 3)` in [0, 1] and
    label int32 `()`.
  """
  clip = schema.parse_clip(record)
  # The segments of a long video (`video/segment` 1, 2, ...) get seeds of
  # their own; segment 0, or a record without segments, that of its name.
  element_seed = tf.stack([salt, tf.strings.to_hash_bucket_fast(tf.where(
      clip.segment > 0, tf.strings.join(
          [clip.filename, tf.strings.as_string(clip.segment)], '#'),
      clip.filename), 2**62)])
  start_seed, crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(element_seed, 3))
  num_available = tf.shape(clip.jpeg_frames)[0]
  slack = tf.maximum(
      num_available - _clip_span(sampling.num_frames, sampling.frame_step), 0)
  start = tf.random.stateless_uniform([], start_seed, minval=0,
                                      maxval=slack + 1, dtype=tf.int32)
  indices = sample_frame_indices(num_available, sampling.num_frames,
                                 sampling.frame_step, start)
  size = sampling.image_size
  if sampling.train_resize == 'pad':
    video = pad_clip(decode_frames(clip.jpeg_frames, indices), size=size)
  else:
    video = decode_random_crop_clip(clip.jpeg_frames, indices, crop_seed,
                                    size=size,
                                    min_crop_area=sampling.min_crop_area)
  if sampling.flip:
    video = random_flip_clip(video, flip_seed)
  video = tf.ensure_shape(video, [sampling.num_frames, size, size, 3])
  return video, checked_label(clip, path, num_classes)


def eval_clip(record, path, sampling: Sampling, clips: int,
              num_classes: int):
  """One evaluation `(video, label)` pair of a serialized record.

  Each clip is the middle window of the video; `clips > 1` takes that many
  clips centred in equal parts of it (`_eval_starts`). Frames are resized
  so the short side is `image_size` and centre-cropped (`eval_resize=
  'crop'`), or resized to fit and zero-padded (`'pad'`).

  Returns:
    video float32 `(num_frames, image_size, image_size, 3)`, or `(clips,
    num_frames, image_size, image_size, 3)` if `clips > 1`, and label int32.
  """
  clip = schema.parse_clip(record)
  num_available = tf.shape(clip.jpeg_frames)[0]
  num_frames, frame_step = sampling.num_frames, sampling.frame_step
  starts = _eval_starts(num_available, num_frames, frame_step, clips)
  indices = sample_frame_indices(num_available, num_frames, frame_step, starts)
  frames = decode_frames(clip.jpeg_frames, tf.reshape(indices, [-1]))
  size = sampling.image_size
  if sampling.eval_resize == 'crop':
    video = center_crop_clip(frames, size=size)
  else:
    video = pad_clip(frames, size=size)
  shape = [num_frames, size, size, 3]
  if clips > 1:
    shape = [clips] + shape
  return tf.reshape(video, shape), checked_label(clip, path, num_classes)
