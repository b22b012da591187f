"""Tests of the pure-Python TFRecord writer against TensorFlow's own."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.data import clips
from trainer.data import schema
from trainer.data import tfrecord_writer


def _jpegs(count, seed=0):
  rng = np.random.default_rng(seed)
  return [clips.encode_jpeg(rng.integers(0, 256, (8, 12, 3), np.uint8), 90)
          for _ in range(count)]


# label index 0 and a large one exercise the varint; 'vidéo' is non-ASCII.
CLIPS = [(0, 'moving_left', 'moving_left/a.avi', 1),
         (3, 'moving_up', 'moving_up/vidéo à ü 1.avi', 5),
         (2**40 + 7, 'c', 'c/long.avi', 200)]


def test_tfrecord_frame_matches_tensorflow_writer(tmp_path):
  path = tmp_path / 'reference.tfrecord'
  payloads = [b'', b'x', os.urandom(1023), os.urandom(1024),
              os.urandom(5000), os.urandom(300_001)]
  with tf.io.TFRecordWriter(str(path)) as writer:
    for payload in payloads:
      writer.write(payload)
  assert b''.join(map(tfrecord_writer.tfrecord_frame, payloads)) == (
      path.read_bytes())


@pytest.mark.parametrize('data, expected', [
    (b'', 0x00000000),
    (b'123456789', 0xE3069283),  # the standard CRC-32C check value
    (bytes(32), 0x8A9136AA),     # RFC 3720 B.4: 32 bytes of zeros
    (bytes([0xFF] * 32), 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of ones
])
def test_crc32c_known_values(data, expected):
  assert tfrecord_writer.crc32c(data) == expected


@pytest.mark.parametrize('size', [1023, 1024, 4097, 70_001])
def test_crc32c_block_path_equals_bytewise_path(size):
  data = os.urandom(size)
  crc = 0xFFFFFFFF
  for byte in data:  # the textbook loop, one bit at a time
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  assert tfrecord_writer.crc32c(data) == crc ^ 0xFFFFFFFF


@pytest.mark.parametrize('label_index, label_text, filename, frames', CLIPS)
def test_sequence_example_equals_deterministic_protobuf(label_index,
                                                        label_text, filename,
                                                        frames):
  jpegs = _jpegs(frames)
  record = tfrecord_writer.encode_sequence_example(
      label_index, label_text, filename, jpegs)
  reference = tf.train.SequenceExample.FromString(
      clips.encode_clip(jpegs, label_index, label_text, filename))
  assert record == reference.SerializeToString(deterministic=True)
  assert tf.train.SequenceExample.FromString(record) == reference


@pytest.mark.parametrize('label_index, label_text, filename, frames', CLIPS)
def test_written_file_is_read_by_parse_clip(tmp_path, label_index, label_text,
                                            filename, frames):
  jpegs = _jpegs(frames)
  path = tmp_path / 'clip.tfrecord'
  path.write_bytes(tfrecord_writer.tfrecord_frame(
      tfrecord_writer.encode_sequence_example(
          label_index, label_text, filename, jpegs)) * 2)
  records = list(tf.data.TFRecordDataset(str(path)))
  assert len(records) == 2
  clip = schema.parse_clip(records[1])
  assert int(clip.label) == label_index
  assert clip.label_text.numpy().decode() == label_text
  assert clip.filename.numpy().decode() == filename
  assert [j.numpy() for j in clip.jpeg_frames] == jpegs


@pytest.mark.parametrize('sizes', [[5, 1023, 70_001, 1], [3 << 20] * 3])
def test_crc32c_of_parts_combines_to_that_of_the_whole(sizes):
  parts = [os.urandom(size) for size in sizes]
  crc = 0
  for part in parts:
    crc = tfrecord_writer._crc_combine(crc, tfrecord_writer.crc32c(part),
                                       len(part))
  assert crc == tfrecord_writer.crc32c(b''.join(parts))


@pytest.mark.parametrize('segment', [None, 0, 7])
def test_a_record_written_from_its_pieces_is_tensorflows(tmp_path, segment):
  # 12 MB of incompressible "JPEGs" of uneven sizes: three checksum runs.
  rng = np.random.default_rng(segment)
  jpegs = [rng.bytes(int(size)) for size in rng.integers(0, 400_000, 60)]
  pieces = tfrecord_writer.sequence_example_pieces(
      3, 'moving_up', 'moving_up/vidéo.avi', jpegs, segment)
  path = tmp_path / 'pieces.tfrecord'
  with open(path, 'wb') as f:
    written = tfrecord_writer.write_sequence_example(f, pieces)
  reference = tmp_path / 'reference.tfrecord'
  record = tfrecord_writer.encode_sequence_example(
      3, 'moving_up', 'moving_up/vidéo.avi', jpegs, segment)
  with tf.io.TFRecordWriter(str(reference)) as writer:
    writer.write(record)
  assert b''.join(pieces) == record
  assert path.read_bytes() == reference.read_bytes()
  assert written == path.stat().st_size
  (read,) = tf.data.TFRecordDataset(str(path))
  clip = schema.parse_clip(read)
  assert (int(clip.segment), [j.numpy() for j in clip.jpeg_frames]) == (
      segment or 0, jpegs)
