"""decode_video gives the right frames, rates and sizes; names failures."""

import os
import re

import cv2
import numpy as np
import pytest

from trainer.data.synthetic import generate_videos
from trainer.data.video_decode import decode_video
from trainer.data.video_decode import DecodedVideo
from trainer.data.video_decode import resized_shape
from trainer.data.video_decode import VideoDecodeError


def _write_avi(path, frames_rgb, fps=10.0):
  """Writes uint8 RGB `(frames, height, width, 3)` as an MJPG AVI."""
  height, width = frames_rgb.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps,
                           (width, height))
  assert writer.isOpened(), path
  for frame in frames_rgb:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()
  return str(path)


def _numbered_frames(num_frames, height=48, width=64):
  """Frame i is flat grey 10 * i + 20, so a decoded frame tells its index."""
  levels = 10 * np.arange(num_frames) + 20
  return np.broadcast_to(levels[:, None, None, None].astype(np.uint8),
                         (num_frames, height, width, 3)).copy()


def _frame_indices(video: DecodedVideo):
  return [int(round((frame.mean() - 20) / 10)) for frame in video.frames]


def _noise_frames(num_frames, height=48, width=64, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def test_decodes_rgb_frames_and_rates(tmp_path):
  frames = np.zeros((6, 48, 64, 3), np.uint8)
  frames[:, :, :32, 0] = 230  # Red left half, in RGB.
  frames[:, :, 32:, 2] = 230  # Blue right half.
  video = decode_video(_write_avi(tmp_path / 'rgb.avi', frames, fps=12.0))
  assert video.frames.dtype == np.uint8
  assert video.frames.shape == (6, 48, 64, 3)
  assert video.source_fps == pytest.approx(12.0)
  assert video.fps == pytest.approx(12.0)
  assert video.source_size == (48, 64)
  # JPEG blurs colour near the edge; compare away from it.
  np.testing.assert_allclose(video.frames[:, :, :24].mean(axis=(0, 1, 2)),
                             [230, 0, 0], atol=12)
  np.testing.assert_allclose(video.frames[:, :, 40:].mean(axis=(0, 1, 2)),
                             [0, 0, 230], atol=12)


@pytest.mark.parametrize('fps, expected_indices, expected_fps', [
    (None, list(range(16)), 10.0),
    (5.0, [0, 2, 4, 6, 8, 10, 12, 14], 5.0),
    (3.0, [0, 3, 7, 10, 13], 3.0),
    (20.0, list(range(16)), 10.0),  # No upsampling: keeps the source rate.
])
def test_keeps_frames_nearest_the_requested_rate(tmp_path, fps,
                                                 expected_indices,
                                                 expected_fps):
  path = _write_avi(tmp_path / 'numbered.avi', _numbered_frames(16), fps=10.0)
  video = decode_video(path, fps=fps)
  assert _frame_indices(video) == expected_indices
  assert video.fps == pytest.approx(expected_fps)
  assert video.source_fps == pytest.approx(10.0)


@pytest.mark.parametrize('source_shape, short_side, expected_shape', [
    ((48, 64), 24, (24, 32)),    # Shrink, landscape.
    ((120, 160), 64, (64, 85)),  # 85.33 rounds to 85.
    ((64, 48), 36, (48, 36)),    # Portrait: width is the short side.
    ((48, 64), 96, (96, 128)),   # Grow.
    ((48, 64), 48, (48, 64)),    # Already there.
])
def test_resizes_the_short_side_keeping_aspect(tmp_path, source_shape,
                                              short_side, expected_shape):
  height, width = source_shape
  frames = np.zeros((3, height, width, 3), np.uint8)
  frames[:, :, : width // 2] = 200  # Bright left half.
  video = decode_video(_write_avi(tmp_path / 'sized.avi', frames),
                       short_side=short_side, upscale=True)
  assert video.frames.shape == (3,) + expected_shape + (3,)
  assert video.source_size == source_shape
  left = video.frames[:, :, : expected_shape[1] // 2 - 2].mean()
  right = video.frames[:, :, expected_shape[1] // 2 + 2:].mean()
  assert left > 150 and right < 50, (left, right)


@pytest.mark.parametrize('height, width, short_side, expected', [
    (1, 1000, 1, (1, 1000)),
    (1000, 3, 1, (333, 1)),
    (3, 1000, 1, (1, 333)),
    (2, 3, 1, (1, 2)),  # 1.5 rounds half up.
])
def test_resized_shape_rounds_to_nearest(height, width, short_side, expected):
  assert resized_shape(height, width, short_side) == expected


def _empty(tmp_path):
  path = tmp_path / 'empty.avi'
  path.write_bytes(b'')
  return str(path)


def _text(tmp_path):
  path = tmp_path / 'notes.avi'
  path.write_text('this is not a video\n' * 20)
  return str(path)


def _no_frames(tmp_path):
  return _write_avi(tmp_path / 'header_only.avi', np.zeros((0, 48, 64, 3),
                                                           np.uint8))


def _truncated(tmp_path):
  whole = _write_avi(tmp_path / 'whole.avi', _noise_frames(16))
  data = open(whole, 'rb').read()
  path = tmp_path / 'half.avi'
  path.write_bytes(data[:len(data) // 2])
  return str(path)


def _short(tmp_path):
  return _write_avi(tmp_path / 'short.avi', _numbered_frames(3))


def _missing(tmp_path):
  return str(tmp_path / 'missing.avi')


@pytest.mark.parametrize('make_path, min_frames, reason', [
    (_empty, 1, 'empty file'),
    (_text, 1, 'cannot open'),
    (_no_frames, 1, 'no frames'),
    (_truncated, 1, r'truncated after frame [1-7]'),  # < 8 of 16
    (_short, 8, r'too short: 3 frames < 8'),
    (_missing, 1, 'not found'),
])
def test_bad_videos_raise_with_reason(tmp_path, make_path, min_frames, reason):
  path = make_path(tmp_path)
  with pytest.raises(VideoDecodeError) as caught:
    decode_video(path, min_frames=min_frames)
  assert re.fullmatch(reason, caught.value.reason), caught.value.reason
  assert caught.value.path == path
  assert path in str(caught.value)
  assert isinstance(caught.value, ValueError)


def test_min_frames_counts_frames_after_rate_reduction(tmp_path):
  path = _write_avi(tmp_path / 'ten.avi', _numbered_frames(10), fps=10.0)
  assert decode_video(path, min_frames=10).num_frames == 10
  with pytest.raises(VideoDecodeError, match='too short: 5 frames < 10'):
    decode_video(path, fps=5.0, min_frames=10)


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason='root reads files whatever their mode')
def test_unreadable_file_cannot_open(tmp_path):
  path = _write_avi(tmp_path / 'locked.avi', _numbered_frames(4))
  os.chmod(path, 0)
  with pytest.raises(VideoDecodeError) as caught:
    decode_video(path)
  assert caught.value.reason == 'cannot open'


def test_mostly_complete_file_keeps_whole_frames_that_decoded(tmp_path):
  whole = _write_avi(tmp_path / 'whole.avi', _noise_frames(16))
  data = open(whole, 'rb').read()
  path = tmp_path / 'cut.avi'
  path.write_bytes(data[:len(data) * 8 // 10])
  video = decode_video(str(path))
  # At least half of 16 decode; the last, partial one is dropped.
  assert 7 <= video.num_frames < 16
  np.testing.assert_array_equal(video.frames,
                                decode_video(whole).frames[:video.num_frames])


@pytest.mark.parametrize('folder, name', [
    ('plain', 'with space.avi'),
    ('dossier é', 'vidéo ü 動画.avi'),
    ('a b', 'ünïcödé name.avi'),
])
def test_paths_with_spaces_and_non_ascii(tmp_path, folder, name):
  (tmp_path / folder).mkdir()
  frames = _numbered_frames(5)
  path = _write_avi(tmp_path / folder / name, frames)
  video = decode_video(path)
  assert _frame_indices(video) == list(range(5))
  # A pathlib.Path works as well as a str.
  assert decode_video(tmp_path / folder / name).num_frames == 5


@pytest.mark.parametrize('argument, value', [
    ('fps', 0),
    ('fps', -5.0),
    ('fps', float('nan')),
    ('short_side', 0),
    ('short_side', 12.5),
    ('min_frames', 0),
    ('decoders', ()),
    ('decoders', 'pyav'),
    ('decoders', ('ffmpeg',)),
])
def test_bad_arguments_name_themselves(tmp_path, argument, value):
  path = _write_avi(tmp_path / 'ok.avi', _numbered_frames(2))
  with pytest.raises(ValueError, match=re.escape(f'{argument}={value!r}')):
    decode_video(path, **{argument: value})


@pytest.mark.parametrize('size, short_side, expected', [
    ((120, 160), 256, (120, 160)),   # smaller: kept, never upscaled
    ((240, 320), 128, (128, 171)),   # larger: downscaled
    ((120, 160), 120, (120, 160)),
])
def test_short_side_is_a_maximum_by_default(tmp_path, size, short_side,
                                           expected):
  generate_videos(str(tmp_path), num_classes=2, videos_per_class=1,
                  num_frames=8, size=size)
  path = str(tmp_path / 'moving_left/moving_left_0000.avi')
  video = decode_video(path, short_side=short_side)
  assert video.frames.shape[1:3] == expected
  if expected == size:
    np.testing.assert_array_equal(video.frames, decode_video(path).frames)
