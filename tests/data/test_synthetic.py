"""The synthetic dataset: classes differ only in motion; files round-trip."""

import hashlib
import os

import cv2
import numpy as np
import pytest

from trainer.data import synthetic
from trainer.data.synthetic import CLASS_NAMES
from trainer.data.video_decode import decode_video

SIZE = (48, 64)
NUM_FRAMES = 8
TRANSLATIONS = {
    'moving_left': (-1, 0),
    'moving_right': (1, 0),
    'moving_up': (0, -1),
    'moving_down': (0, 1),
}


def _sha256(path):
  return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def _generate(output_dir, seed=0, num_classes=4, videos_per_class=2):
  return synthetic.generate_videos(str(output_dir), num_classes=num_classes,
                                   videos_per_class=videos_per_class,
                                   num_frames=NUM_FRAMES, size=SIZE, fps=10,
                                   seed=seed)


def _circular_centroid(mask):
  """`(x, y)` mean of a mask on a torus, so wrapping shapes do not jump."""
  ys, xs = np.nonzero(mask)
  height, width = mask.shape
  centroid = []
  for coords, period in ((xs, width), (ys, height)):
    angles = 2 * np.pi * coords / period
    mean = np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())
    centroid.append(mean * period / (2 * np.pi))
  return np.array(centroid)


def _torus_shift(mask_a, mask_b):
  """`(dx, dy)` moving `mask_a` onto `mask_b`, by circular phase correlation."""
  (dx, dy), _ = cv2.phaseCorrelate(mask_a.astype(np.float64),
                                   mask_b.astype(np.float64))
  return dx, dy


def _wrapped(delta, period):
  return (delta + period / 2) % period - period / 2


def test_writes_class_folders_and_round_trips(tmp_path):
  paths = _generate(tmp_path, num_classes=6, videos_per_class=2)
  expected = [str(tmp_path / name / f'{name}_{index:04d}.avi')
              for name in CLASS_NAMES for index in range(2)]
  assert paths == expected
  # Atomic writes leave no temporary files behind.
  assert sorted(f for name in CLASS_NAMES
                for f in os.listdir(tmp_path / name)) == sorted(
                    os.path.basename(p) for p in expected)
  for path in paths:
    name = os.path.basename(os.path.dirname(path))
    class_index = CLASS_NAMES.index(name)
    index = int(path[-8:-4])
    video = decode_video(path)
    assert video.fps == pytest.approx(10.0)
    assert video.source_size == SIZE
    original = synthetic.frames_for(
        class_index, synthetic.video_rng(0, class_index, index), NUM_FRAMES,
        SIZE)
    assert video.frames.shape == original.shape == (NUM_FRAMES,) + SIZE + (3,)
    error = np.abs(video.frames.astype(int) - original).mean()
    assert error < 8, (path, error)


def test_a_video_is_written_under_a_hidden_avi_temporary(tmp_path,
                                                        monkeypatch):
  # Hidden, so that a folder source listed meanwhile skips it; '.avi' last,
  # from which OpenCV picks the container. An error leaves nothing.
  opened = []
  real_writer = cv2.VideoWriter

  def writer(path, *args):
    opened.append(path)
    return real_writer(path, *args)

  def fail(*args):
    raise RuntimeError('disk full')

  monkeypatch.setattr(cv2, 'VideoWriter', writer)
  monkeypatch.setattr(cv2, 'cvtColor', fail)
  with pytest.raises(RuntimeError, match='disk full'):
    _generate(tmp_path, num_classes=2, videos_per_class=1)
  assert len(opened) == 1
  folder, name = os.path.split(opened[0])
  assert folder == str(tmp_path / 'moving_left')
  assert name.startswith('.moving_left_0000.avi.tmp-')
  assert name.endswith('.avi')
  assert not os.listdir(folder)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
  first = _generate(tmp_path / 'a', seed=3)
  again = _generate(tmp_path / 'b', seed=3)
  other = _generate(tmp_path / 'c', seed=4)
  assert [_sha256(p) for p in first] == [_sha256(p) for p in again]
  for path_a, path_c in zip(first, other):
    assert _sha256(path_a) != _sha256(path_c)
    assert np.abs(decode_video(path_a).frames.astype(int) -
                  decode_video(path_c).frames).mean() > 5


def test_videos_do_not_depend_on_dataset_size(tmp_path):
  small = _generate(tmp_path / 'small', num_classes=2, videos_per_class=1)
  large = _generate(tmp_path / 'large', num_classes=4, videos_per_class=3)
  assert _sha256(small[0]) == _sha256(large[0])
  assert _sha256(small[1]) == _sha256(large[3])


@pytest.mark.parametrize('seed', range(6))
def test_single_frames_do_not_reveal_the_class(seed):
  clips = [synthetic.render_clip(c, np.random.default_rng(seed), NUM_FRAMES,
                                 SIZE) for c in range(len(CLASS_NAMES))]
  # The class consumes no randomness: the first frame is the same for all.
  for clip in clips[1:]:
    np.testing.assert_array_equal(clip.frames[0], clips[0].frames[0])
  # Later frames only move or turn the shapes: colours and areas agree.
  for t in range(1, NUM_FRAMES):
    colours = np.array([c.frames[t].reshape(-1, 3).mean(axis=0)
                        for c in clips])
    areas = np.array([c.masks[t].mean() for c in clips])
    assert np.ptp(colours, axis=0).max() < 3, (t, colours)
    assert np.ptp(areas) < 0.15 * areas.mean(), (t, areas)


def test_frames_vary_across_videos():
  means = np.array([
      synthetic.frames_for(0, np.random.default_rng(seed), 2, SIZE)[0].mean(
          axis=(0, 1)) for seed in range(20)])
  assert means.std(axis=0).min() > 10  # Backgrounds vary in colour.
  # One contrast polarity: shapes brighter than the background everywhere.
  for seed in range(20):
    clip = synthetic.render_clip(seed % 6, np.random.default_rng(seed), 2,
                                 SIZE)
    frame, mask = clip.frames[0].astype(int), clip.masks[0]
    assert frame[mask].min(axis=0).min() >= frame[~mask].max() + 40
  areas = [synthetic.render_clip(0, np.random.default_rng(s), 2, SIZE)
           .masks[0].mean() for s in range(20)]
  assert 0.03 < np.mean(areas) < 0.4, areas  # Shapes big but not the frame.


@pytest.mark.parametrize('name', sorted(TRANSLATIONS))
def test_translation_moves_the_shapes_several_pixels_per_frame(name):
  class_index = CLASS_NAMES.index(name)
  height = 120
  for seed in range(5):
    clip = synthetic.render_clip(class_index, np.random.default_rng(seed), 6,
                                 (height, 160))
    steps = np.array([_torus_shift(a, b) for a, b in zip(clip.masks[:-1],
                                                         clip.masks[1:])])
    direction = np.array(TRANSLATIONS[name])
    along = steps @ direction
    across = steps @ direction[::-1]
    # Per-video speed is 2 %..4 % of the short side; shapes land on whole
    # pixels, so single steps jitter by up to a pixel around it.
    assert 0.02 * height - 0.5 < along.mean() < 0.04 * height + 0.5, (seed,
                                                                    steps)
    np.testing.assert_allclose(along, along.mean(), atol=1.5)
    np.testing.assert_allclose(across, 0, atol=1.0)


def _is_one_convex_shape_inside(mask):
  """One convex blob off the edges: a single shape, not two overlapping."""
  if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
    return False
  contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                 cv2.CHAIN_APPROX_SIMPLE)
  if len(contours) != 1:
    return False
  hull_area = cv2.contourArea(cv2.convexHull(contours[0]))
  return cv2.contourArea(contours[0]) > 0.95 * hull_area


def _orientation_degrees(mask):
  """Angle of the long axis, from +x towards +y (clockwise on screen)."""
  moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
  return 0.5 * np.degrees(np.arctan2(2 * moments['mu11'],
                                     moments['mu20'] - moments['mu02']))


@pytest.mark.parametrize('name, sign', [('rotating_cw', 1),
                                        ('rotating_ccw', -1)])
def test_rotation_turns_each_shape(name, sign):
  class_index = CLASS_NAMES.index(name)
  checked = 0
  for seed in range(40):
    clip = synthetic.render_clip(class_index, np.random.default_rng(seed), 6,
                                 (120, 160))
    if not all(_is_one_convex_shape_inside(m) for m in clip.masks):
      continue  # Two shapes, or one cut by the frame edge.
    angles = np.array([_orientation_degrees(m) for m in clip.masks])
    steps = _wrapped(np.diff(angles), 180)
    assert np.all(sign * steps > 8) and np.all(sign * steps < 27), (seed,
                                                                    steps)
    centroids = np.array([_circular_centroid(m) for m in clip.masks])
    np.testing.assert_allclose(centroids, centroids[0][None].repeat(6, 0),
                               atol=1.5)
    checked += 1
  assert checked >= 3


@pytest.mark.parametrize('argument, value', [
    ('num_classes', 1),
    ('num_classes', len(CLASS_NAMES) + 1),
    ('videos_per_class', 0),
    ('num_frames', 1),
    ('size', (8, 64)),
    ('size', 64),
    ('fps', 0),
])
def test_bad_arguments_name_themselves(tmp_path, argument, value):
  with pytest.raises(ValueError, match=argument):
    synthetic.generate_videos(str(tmp_path), **{argument: value})
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('class_index', [-1, len(CLASS_NAMES)])
def test_render_rejects_unknown_class(class_index):
  with pytest.raises(ValueError, match='class_index'):
    synthetic.render_clip(class_index, np.random.default_rng(0))
