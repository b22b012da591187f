"""The TFRecord layout of a prepared clip, shared by preparation and pipeline.

One record is a `tf.train.SequenceExample` in the layout of DeepMind's DMVR
and the Model Garden video reader:

  context:
    clip/label/index  int64   class index, into the manifest's label names
    clip/label/text   bytes   class name
    video/filename    bytes   source video, relative to the source root
    video/segment     int64   which consecutive part of the video, from 0
                              (videos longer than `movinet-prepare
                              --max_seconds` are split); records written
                              before it existed lack it and read as 0
  feature_lists:
    image/encoded     bytes   one JPEG per frame, RGB

The constants import without TensorFlow, so that preparation's worker
processes (which write records without it) stay light; the functions that
need TensorFlow import it when called.
"""

import dataclasses
from typing import Any

LABEL_INDEX_KEY = 'clip/label/index'
LABEL_TEXT_KEY = 'clip/label/text'
FILENAME_KEY = 'video/filename'
SEGMENT_KEY = 'video/segment'
IMAGE_KEY = 'image/encoded'

MANIFEST_NAME = 'manifest.json'
SHARD_SUFFIX = '.tfrecord'


@dataclasses.dataclass(frozen=True)
class ParsedClip:
  """One clip as read back (`parse_clip`); TensorFlow tensors.

  Attributes:
    jpeg_frames: string `(frames,)`, one JPEG per frame.
    label: int64 scalar, the class index.
    label_text: string scalar, the class name.
    filename: string scalar, the source video.
    segment: int64 scalar, which segment of the video (0: the first or only
      one, or a record written before segments existed).
  """
  jpeg_frames: Any
  label: Any
  label_text: Any
  filename: Any
  segment: Any


def shard_name(split: str, index: int, count: int) -> str:
  """`<split>-00000-of-00004.tfrecord`."""
  return f'{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}'


def parse_clip(serialized) -> ParsedClip:
  """Parses one serialized clip (works eagerly and inside tf.data)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  context, sequence = tf.io.parse_single_sequence_example(
      serialized,
      context_features={
          LABEL_INDEX_KEY: tf.io.FixedLenFeature([], tf.int64),
          LABEL_TEXT_KEY: tf.io.FixedLenFeature([], tf.string),
          FILENAME_KEY: tf.io.FixedLenFeature([], tf.string),
          SEGMENT_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0),
      },
      sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature([],
                                                                   tf.string)})
  return ParsedClip(jpeg_frames=sequence[IMAGE_KEY],
                    label=context[LABEL_INDEX_KEY],
                    label_text=context[LABEL_TEXT_KEY],
                    filename=context[FILENAME_KEY],
                    segment=context[SEGMENT_KEY])
