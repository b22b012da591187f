"""TFRecord files of `schema` clips in pure Python, without TensorFlow.

Preparation workers write shards with this module instead of
`tf.io.TFRecordWriter`: importing TensorFlow costs ~4 s and ~700 MB per
process, and its protobuf serializes map fields in an order that changes from
process to process, which would break byte-identical reruns.

  record = encode_sequence_example(2, 'moving_up', 'a/b.avi', jpegs)
  with open(path, 'wb') as f:
    f.write(tfrecord_frame(record))

A long video's record holds many megabytes of JPEGs; `write_sequence_example`
writes it from its pieces (the JPEGs as they are, between headers of a few
bytes) and checksums them as they pass, instead of joining them into one
record and then one frame, which held the JPEGs about five times over.

The bytes equal `tf.train.SequenceExample.SerializeToString(deterministic=True)`
and `tf.io.TFRecordWriter`'s output; `tests/data/test_tfrecord_writer.py`
checks both.
"""

import functools
import struct
from typing import BinaryIO, Iterable, Optional, Sequence

import numpy as np

from trainer.data import schema

# CRC-32C (Castagnoli) polynomial, bit-reversed.
_CASTAGNOLI = 0x82F63B78
# TFRecord's masking constant: masked = rotate_right(crc, 15) + this.
_MASK_DELTA = 0xA282EAD8
# Below this many bytes a plain table loop beats numpy's set-up cost.
_SMALL = 1024
# Pieces of a record are checksummed in runs of about this many bytes.
_CRC_RUN = 4 << 20


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
  return b''.join(sequence_example_pieces(label_index, label_text, filename,
                                          list(jpegs), segment))


def sequence_example_pieces(label_index: int, label_text: str, filename: str,
                            jpegs: Sequence[bytes],
                            segment: Optional[int] = None) -> list[bytes]:
  """`encode_sequence_example`'s bytes as pieces whose concatenation they
  are: the JPEGs themselves (not copied) between the headers that frame
  them. Takes the arguments of `encode_sequence_example`."""
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
  # Each frame is a Feature{bytes_list{value: jpeg}} in the FeatureList:
  # three headers, then the JPEG.
  frames = []
  for jpeg in jpegs:
    inner = _header(1, len(jpeg))
    middle = _header(1, len(inner) + len(jpeg))
    frames += [_header(1, len(middle) + len(inner) + len(jpeg)) + middle +
               inner, jpeg]
  frames_size = sum(map(len, frames))
  name = _field(1, image_key.encode())
  list_header = _header(2, frames_size)
  entry_size = len(name) + len(list_header) + frames_size
  entry_header = _header(1, entry_size)
  return [_field(1, features),
          _header(2, len(entry_header) + entry_size) + entry_header + name +
          list_header, *frames]


def write_sequence_example(f: BinaryIO, pieces: Sequence[bytes]) -> int:
  """Writes to `f` one TFRecord whose data is `pieces` concatenated
  (`sequence_example_pieces`), the bytes `tfrecord_frame` would give,
  without joining them: the pieces are checksummed in runs of about
  `_CRC_RUN` bytes as they are written.

  Returns:
    The bytes written.
  """
  size = sum(map(len, pieces))
  length = struct.pack('<Q', size)
  f.write(length)
  f.write(struct.pack('<I', masked_crc32c(length)))
  crc, run, run_size = 0, [], 0
  for piece in pieces:
    f.write(piece)
    run.append(piece)
    run_size += len(piece)
    if run_size >= _CRC_RUN:
      crc = _crc_combine(crc, crc32c(b''.join(run)), run_size)
      run, run_size = [], 0
  crc = _crc_combine(crc, crc32c(b''.join(run)), run_size)
  f.write(struct.pack('<I', _masked(crc)))
  return 16 + size


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
  return _masked(crc32c(data))


def _masked(crc: int) -> int:
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
  zeros = _zeros_operator(block)
  crc = 0
  for value in register.tolist():
    crc = _apply(zeros, crc) ^ value
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


def _header(number: int, size: int) -> bytes:
  """The tag and length of a length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(size)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _header(number, len(payload)) + payload


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


def _crc_combine(crc_a: int, crc_b: int, size_b: int) -> int:
  """CRC-32C of `a + b` from those of `a` and `b` and `len(b)`: `crc_a`
  run through `size_b` zero bytes (the register is linear), XOR `crc_b`."""
  for bit in range(size_b.bit_length()):
    if size_b >> bit & 1:
      crc_a = _apply(_zeros_power(bit), crc_a)
  return crc_a ^ crc_b


@functools.lru_cache(maxsize=64)
def _zeros_power(exponent: int) -> tuple[list, list, list, list]:
  """`_zeros_operator(2 ** exponent)`, made by applying the one of half the
  length twice (64 compositions in all, not 2 ** exponent byte steps)."""
  if exponent == 0:
    return _zeros_operator(1)
  half = _zeros_power(exponent - 1)
  return tuple([_apply(half, value) for value in table] for table in half)


def _apply(operator, crc: int) -> int:
  """`crc` run through the zero bytes of `operator` (`_zeros_operator`)."""
  t0, t1, t2, t3 = operator
  return (t0[crc & 0xFF] ^ t1[crc >> 8 & 0xFF] ^ t2[crc >> 16 & 0xFF]
          ^ t3[crc >> 24])
