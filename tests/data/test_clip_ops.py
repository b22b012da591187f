"""The per-clip operations, eagerly and inside `Dataset.map`."""

import numpy as np
import pytest
import tensorflow as tf

from tests.data import clips
from tests.data.clips import frame
from trainer.data import clip_ops

SIZE = 32


@pytest.mark.parametrize('num_available,start,expected', [
    (20, 2, [2, 5, 8, 11]),  # frame_step spacing
    (7, 0, [0, 3, 6, 2]),  # short video loops
    (20, [0, 9], [[0, 3, 6, 9], [9, 12, 15, 18]]),  # several clips
])
def test_sample_frame_indices_eager_and_in_dataset(num_available, start,
                                                    expected):
  fn = lambda n, s: clip_ops.sample_frame_indices(n, 4, 3, s)
  eager = clip_ops.sample_frame_indices(num_available, 4, 3, start).numpy()
  np.testing.assert_array_equal(eager, expected)
  np.testing.assert_array_equal(
      clips.in_dataset(fn, num_available, tf.constant(start)), expected)


def test_decode_frames_decodes_the_gathered_frames():
  jpegs = tf.constant([clips.encode_jpeg(frame(t), 95) for t in range(10)])
  indices = tf.constant([7, 2, 2, 9])
  eager = clip_ops.decode_frames(jpegs, indices).numpy()
  assert eager.shape == (4, clips.HEIGHT, clips.WIDTH, 3)
  assert eager.dtype == np.uint8
  np.testing.assert_array_equal(clips.frame_indices(eager / 255),
                                [7, 2, 2, 9])
  np.testing.assert_array_equal(
      clips.in_dataset(clip_ops.decode_frames, jpegs, indices), eager)


@pytest.mark.parametrize('seed', [(0, 1), (5, 7)])
def test_random_resized_crop_uses_one_box_per_clip(seed):
  jpegs = tf.constant([clips.encode_jpeg(frame(t), 95) for t in range(4)])
  fn = lambda j, s: clip_ops.decode_random_crop_clip(j, tf.range(4), s,
                                                     size=SIZE)
  eager = fn(jpegs, tf.constant(seed)).numpy()
  assert eager.shape == (4, SIZE, SIZE, 3) and eager.dtype == np.float32
  assert 0.0 <= eager.min() and eager.max() <= 1.0
  # Red and green encode position only: equal across frames iff the box is
  # (up to JPEG's rounding, which the blue channel's change moves a little).
  for t in range(1, 4):
    difference = np.abs(eager[t, ..., :2] - eager[0, ..., :2])
    assert difference.max() < 4 / 255 and difference.mean() < 1 / 255
  np.testing.assert_array_equal(clips.frame_indices(eager), [0, 1, 2, 3])
  np.testing.assert_allclose(clips.in_dataset(fn, jpegs, tf.constant(seed)),
                             eager, atol=1e-6)
  other = fn(jpegs, tf.constant([seed[0] + 100, seed[1]])).numpy()
  assert not np.allclose(other, eager, atol=4 / 255)


def _reference_crop(jpegs, indices, seed, size, min_crop_area):
  """The crop as it was before `decode_random_crop_clip`: full decode first.

  Samples the box with the same call, decodes whole frames, converts them to
  float, slices the box and resizes.
  """
  frames = tf.image.convert_image_dtype(
      tf.stack([tf.io.decode_jpeg(jpegs[i], channels=3) for i in indices]),
      tf.float32)
  begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(frames)[1:],
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=[3 / 4, 4 / 3],
      area_range=[min_crop_area, 1.0], max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  cropped = tf.slice(frames, tf.concat([[0], begin[:2], [0]], 0),
                     tf.concat([[-1], box_size[:2], [-1]], 0))
  return tf.clip_by_value(tf.image.resize(cropped, [size, size]), 0, 1).numpy()


def _textured_frame(index, height=120, width=160):
  """Gradient frame plus fixed noise, so crop edges and chroma matter."""
  rng = np.random.default_rng(0)
  noise = rng.integers(-40, 41, (height, width, 3))
  y, x = np.mgrid[0:height, 0:width]
  base = np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                   np.full_like(x, clips.INDEX_SCALE * index)], -1)
  return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('make_frame', [frame, _textured_frame])
@pytest.mark.parametrize('seed,min_crop_area', [((0, 1), 0.3), ((5, 7), 0.3),
                                                ((2, 9), 0.08), ((3, 3), 1.0)])
def test_decode_random_crop_matches_full_decode_then_crop(make_frame, seed,
                                                          min_crop_area):
  jpegs = tf.constant([clips.encode_jpeg(make_frame(t), 95)
                       for t in range(6)])
  indices = tf.constant([4, 1, 1, 5])
  fn = lambda j, i, s: clip_ops.decode_random_crop_clip(
      j, i, s, size=SIZE, min_crop_area=min_crop_area)
  eager = fn(jpegs, indices, tf.constant(seed)).numpy()
  assert eager.shape == (4, SIZE, SIZE, 3) and eager.dtype == np.float32
  assert 0.0 <= eager.min() and eager.max() <= 1.0
  reference = _reference_crop(jpegs, [4, 1, 1, 5], seed, SIZE, min_crop_area)
  # Same box; decoding only the box rounds differently at its edges.
  assert np.abs(eager - reference).mean() < 1e-3
  np.testing.assert_allclose(eager, reference, atol=16 / 255)
  np.testing.assert_allclose(
      clips.in_dataset(fn, jpegs, indices, tf.constant(seed)), eager,
      atol=1e-6)


def test_center_crop_keeps_the_middle():
  frames = np.stack([frame(t) for t in range(2)])
  fn = lambda f: clip_ops.center_crop_clip(f, size=SIZE)
  eager = fn(frames).numpy()
  assert eager.shape == (2, SIZE, SIZE, 3)
  # 48x64 -> 32x43, then columns 5..36: red spans the middle of the gradient.
  red = eager[0, 0, :, 0] * 255
  assert red[0] == pytest.approx(255 * 5.5 / 43, abs=4)
  assert red[-1] == pytest.approx(255 * 36.5 / 43, abs=4)
  np.testing.assert_allclose(clips.in_dataset(fn, frames), eager, atol=1e-6)
