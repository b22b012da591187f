"""TFRecord files of `schema` clips in pure Python, without TensorFlow.

Preparation workers write shards with this module instead of
`tf.io.TFRecordWriter`: importing TensorFlow costs ~4 s and ~700 MB per
process, and its protobuf serializes map fields in an order that changes from
process to process, which would break byte-identical reruns.

  record = encode_sequence_example(2, 'moving_up', 'a/b.avi', jpegs)
  with open(path, 'wb') as f:
    f.write(tfrecord_frame(record))

The bytes equal `tf.train.SequenceExample.SerializeToString(deterministic=True)`
and `tf.io.TFRecordWriter`'s output; `tests/data/test_tfrecord_writer.py`
checks both.
"""

import functools
import struct
from typing import Iterable, Optional

import numpy as np

from trainer.data import schema

# CRC-32C (Castagnoli) polynomial, bit-reversed.
_CASTAGNOLI = 0x82F63B78
# TFRecord's masking constant: masked = rotate_right(crc, 15) + this.
_MASK_DELTA = 0xA282EAD8
# Below this many bytes a plain table loop beats numpy's set-up cost.
_SMALL = 1024


def encode_sequence_example(label_index: int, label_text: str, filename: str,
                            jpegs: Iterable[bytes],
                            segment: Optional[int] = None) -> bytes:
  """One clip as a serialized `tf.train.SequenceExample`.

  The `tf.train.SequenceExample` of `schema`'s layout, serialized as
  protobuf does with `deterministic=True` (context map keys sorted).

  Args:
    label_index: class index, an int64 context feature.
    label_text: class name, a UTF-8 bytes context feature.
    filename: video name relative to the source root, UTF-8 bytes.
    jpegs: encoded frames in time order, one bytes feature each in the
      `image` feature list.
    segment: which segment of the video the clip is (0 for the first or
      only one), an int64 context feature; None leaves it out.

  Returns:
    The serialized protobuf.
  """
  index_key, text_key, file_key, image_key = (
      schema.LABEL_INDEX_KEY, schema.LABEL_TEXT_KEY, schema.FILENAME_KEY,
      schema.IMAGE_KEY)
  context = {
      index_key: _int64_feature(label_index),
      text_key: _bytes_feature([label_text.encode('utf-8')]),
      file_key: _bytes_feature([filename.encode('utf-8')]),
  }
  if segment is not None:
    context[schema.SEGMENT_KEY] = _int64_feature(segment)
  features = b''.join(
      _field(1, _field(1, k.encode()) + _field(2, context[k]))
      for k in sorted(context))
  frames = b''.join(_field(1, _bytes_feature([j])) for j in jpegs)
  feature_lists = _field(1, _field(1, image_key.encode()) + _field(2, frames))
  return _field(1, features) + _field(2, feature_lists)


def tfrecord_frame(data: bytes) -> bytes:
  """`data` framed as one TFRecord, as `tf.io.TFRecordWriter` writes it.

  Layout: little-endian uint64 length, masked CRC-32C of those 8 bytes,
  `data`, masked CRC-32C of `data`. Concatenated frames make a file.
  """
  length = struct.pack('<Q', len(data))
  return b''.join((length, struct.pack('<I', masked_crc32c(length)), data,
                   struct.pack('<I', masked_crc32c(data))))


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C of `data`, a uint32."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`, a uint32, vectorized with numpy.

  The register runs over `sqrt(len)`-byte blocks side by side, then the
  block CRCs are chained with the "shift by a block of zeros" operator.
  """
  table = _crc_table()
  if len(data) < _SMALL:
    small = _crc_list()
    crc = 0xFFFFFFFF
    for byte in data:
      crc = small[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
  block = 1 << max(8, (len(data).bit_length() + 1) // 2)
  count = -(-len(data) // block)
  # Leading zeros leave a zero register unchanged; the 0xFFFFFFFF start is
  # the same as complementing the first four bytes from a zero register.
  buffer = np.zeros(count * block, np.uint8)
  buffer[count * block - len(data):] = np.frombuffer(data, np.uint8)
  buffer[count * block - len(data):][:4] ^= 0xFF
  columns = np.ascontiguousarray(buffer.reshape(count, block).T)
  register = np.zeros(count, np.uint32)
  for column in columns:
    register = table[(register ^ column) & 0xFF] ^ (register >> 8)
  t0, t1, t2, t3 = _zeros_operator(block)
  crc = 0
  for value in register.tolist():
    crc = (t0[crc & 0xFF] ^ t1[crc >> 8 & 0xFF] ^ t2[crc >> 16 & 0xFF]
           ^ t3[crc >> 24]) ^ value
  return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- protobuf


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(values) -> bytes:  # Feature.bytes_list{value}
  return _field(1, b''.join(_field(1, v) for v in values))


def _int64_feature(value: int) -> bytes:  # Feature.int64_list{value}
  return _field(3, _field(1, _varint(value)))


# ------------------------------------------------------------------ CRC-32C


@functools.lru_cache(maxsize=1)
def _crc_table() -> np.ndarray:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (_CASTAGNOLI if crc & 1 else 0)
    table.append(crc)
  return np.array(table, np.uint32)


@functools.lru_cache(maxsize=1)
def _crc_list() -> list:
  return _crc_table().tolist()


@functools.lru_cache(maxsize=32)
def _zeros_operator(length: int) -> tuple[list, list, list, list]:
  """Tables applying "run `length` zero bytes through the register".

  One table per byte of the register, 256 entries each.
  """
  table = _crc_table()
  bits = np.array([1 << b for b in range(32)], np.uint32)
  for _ in range(length):
    bits = table[bits & 0xFF] ^ (bits >> 8)
  bits = [int(b) for b in bits]
  tables = []
  for part in range(4):
    entries = []
    for value in range(256):
      acc = 0
      for bit in range(8):
        if value >> bit & 1:
          acc ^= bits[8 * part + bit]
      entries.append(acc)
    tables.append(entries)
  return tables[0], tables[1], tables[2], tables[3]
