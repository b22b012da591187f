"""Clips as TensorFlow's own protobuf and JPEG encoders write them.

The reference the tests compare preparation's pure-Python writer with
(`trainer.data.tfrecord_writer`), and a quick way to write test shards in the
layout of `trainer.data.schema`.
"""

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
