"""The TFRecord layout of a prepared clip, shared by preparation and pipeline.

One record is a `tf.train.SequenceExample` in the layout of DeepMind's DMVR
and the Model Garden video reader:

  context:
    clip/label/index  int64   class index, into the manifest's label names
    clip/label/text   bytes   class name
    video/filename    bytes   source video, relative to the source root
  feature_lists:
    image/encoded     bytes   one JPEG per frame, RGB

The constants import without TensorFlow, so that preparation's worker
processes (which write records without it) stay light; the functions that
need TensorFlow import it when called.
"""

LABEL_INDEX_KEY = 'clip/label/index'
LABEL_TEXT_KEY = 'clip/label/text'
FILENAME_KEY = 'video/filename'
IMAGE_KEY = 'image/encoded'

MANIFEST_NAME = 'manifest.json'
SHARD_SUFFIX = '.tfrecord'

# What the manifest records of each shard, `manifest['splits'][split]
# ['shards']`: its file name, clip count, the sha256 and size in bytes of the
# file (checked by `movinet-prepare --verify` and before training), and the
# distinct label indices of its clips (checked against the manifest's label
# list before training, without reading a record). Manifests written before
# sizes and label indices were recorded lack those two keys.
SHARD_KEYS = ('file', 'num_clips', 'sha256', 'size', 'label_indices')


def shard_name(split: str, index: int, count: int) -> str:
  """`<split>-00000-of-00004.tfrecord`."""
  return f'{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}'


def shard_entry(record: dict) -> dict:
  """The manifest's entry of a shard: the `SHARD_KEYS` of its `record`.

  Args:
    record: what preparation recorded of the finished shard (at least
      `file`, `num_clips` and `sha256`).

  Returns:
    `{key: record[key]}` for the `SHARD_KEYS` the record has.
  """
  return {key: record[key] for key in SHARD_KEYS if key in record}


def parse_clip(serialized):
  """Parses one serialized clip (works eagerly and inside tf.data).

  Returns:
    A dict with `jpeg_frames` (string tensor `(frames,)`), `label` (int64
    scalar), `label_text` and `filename` (string scalars).
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  context, sequence = tf.io.parse_single_sequence_example(
      serialized,
      context_features={
          LABEL_INDEX_KEY: tf.io.FixedLenFeature([], tf.int64),
          LABEL_TEXT_KEY: tf.io.FixedLenFeature([], tf.string),
          FILENAME_KEY: tf.io.FixedLenFeature([], tf.string),
      },
      sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature([],
                                                                   tf.string)})
  return {
      'jpeg_frames': sequence[IMAGE_KEY],
      'label': context[LABEL_INDEX_KEY],
      'label_text': context[LABEL_TEXT_KEY],
      'filename': context[FILENAME_KEY],
  }
