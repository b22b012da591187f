"""Clips as TensorFlow's own protobuf and JPEG encoders write them.

The reference the tests compare preparation's pure-Python writer with
(`trainer.data.tfrecord_writer`), a quick way to write test shards in the
layout of `trainer.data.schema` (`write_prepared`), and the frames that let
a test read back what the pipeline did to them.
"""

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from trainer.data import schema


def encode_clip(jpeg_frames: Sequence[bytes], label_index: int,
                label_text: str, filename: str) -> bytes:
  """One serialized clip; `jpeg_frames` are JPEG-encoded RGB frames."""
  example = tf.train.SequenceExample()
  context = example.context.feature
  context[schema.LABEL_INDEX_KEY].int64_list.value.append(int(label_index))
  context[schema.LABEL_TEXT_KEY].bytes_list.value.append(
      label_text.encode('utf-8'))
  context[schema.FILENAME_KEY].bytes_list.value.append(
      filename.encode('utf-8'))
  frames = example.feature_lists.feature_list[schema.IMAGE_KEY]
  for jpeg in jpeg_frames:
    frames.feature.add().bytes_list.value.append(jpeg)
  return example.SerializeToString()


def encode_jpeg(frame_rgb: np.ndarray, quality: int) -> bytes:
  """JPEG bytes of one `(height, width, 3)` uint8 RGB frame."""
  return tf.io.encode_jpeg(frame_rgb, quality=quality).numpy()


# Frames whose pixels say where they are and which frame they are, so that a
# test reads back which frames of which clip a pipeline took, and how it
# cropped and flipped them.
HEIGHT, WIDTH = 48, 64
INDEX_SCALE = 10  # blue channel = 10 * frame index


def frame(index: int) -> np.ndarray:
  """Red grows along x, green along y (same in every frame), blue = index."""
  y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
  return np.stack([x * 255 // (WIDTH - 1), y * 255 // (HEIGHT - 1),
                   np.full_like(x, INDEX_SCALE * index)], -1).astype(np.uint8)


def frame_indices(video) -> np.ndarray:
  """Frame index of every frame of float video `(..., h, w, 3)`.

  Reads the central half of rows, which 'pad' letterboxing leaves intact.
  """
  video = np.asarray(video)
  height = video.shape[-3]
  blue = video[..., height // 4:-height // 4, :, 2].mean(axis=(-2, -1))
  return np.rint(blue * 255 / INDEX_SCALE).astype(int)


def write_prepared(root, shard_lengths, *, split='train', labels=None) -> str:
  """Writes shards of clips whose lengths are `shard_lengths[shard][clip]`.

  Clip number k (counting over all shards) has label k and file name
  `v<k>.avi`, so tests can tell which records a pipeline read. The manifest
  is as small as one may be: labels, and each shard's file, clip count and
  (empty) sha256.
  """
  os.makedirs(root, exist_ok=True)
  num_clips = sum(len(s) for s in shard_lengths)
  entries, label = [], 0
  for i, lengths in enumerate(shard_lengths):
    name = schema.shard_name(split, i, len(shard_lengths))
    with tf.io.TFRecordWriter(os.path.join(root, name)) as writer:
      for length in lengths:
        jpegs = [encode_jpeg(frame(t), 95) for t in range(length)]
        writer.write(encode_clip(jpegs, label, f'c{label}', f'v{label}.avi'))
        label += 1
    entries.append({'file': name, 'num_clips': len(lengths), 'sha256': ''})
  manifest = {
      'labels': labels or [f'c{k}' for k in range(num_clips)],
      'splits': {split: {'num_clips': num_clips, 'shards': entries}},
      'frames': {'fps': None, 'short_side': None, 'jpeg_quality': 95},
      'skipped': [],
  }
  with open(os.path.join(root, schema.MANIFEST_NAME), 'w',
            encoding='utf-8') as f:
    json.dump(manifest, f)
  return str(root)


def collect(dataset) -> tuple[np.ndarray, np.ndarray]:
  """`(videos, labels)` of every batch of `dataset`, concatenated."""
  videos, labels = zip(*[(video.numpy(), label.numpy())
                         for video, label in dataset])
  return np.concatenate(videos), np.concatenate(labels)


def in_dataset(fn, *args) -> np.ndarray:
  """Runs `fn(*args)` inside Dataset.map (graph mode)."""
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  return next(iter(dataset)).numpy()
