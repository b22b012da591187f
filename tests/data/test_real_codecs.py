"""Videos as users have them: real encodes, decoded, segmented, recorded.

The fixtures are real encodes made once per module with Debian's `ffmpeg`
CLI (5.1; `.ci/run` installs it), tiny and fast, in the shapes users'
videos broke preparation with:
- AV1 in MP4 (libaom-av1), what YouTube and yt-dlp serve by default, so a
  Kinetics download is full of it; OpenCV's FFmpeg has no decoder for it;
- phone video: H.264 and AV1 in MP4 stored landscape with a display matrix
  that turns them a quarter clockwise, what a phone held upright writes
  (`ffprobe` says rotation -90; made by a stream copy with
  `-metadata:s:v:0 rotate=270`);
- HEVC, VP9 (WebM), MPEG-2 (program stream), H.264 at 10 bits, grayscale
  FFV1, an odd frame size, variable frame rate;
- an audio-only MP4, an MP4 cut short (`-movflags +faststart`, so its index
  survives the cut, as with a download that stopped), a codec no FFmpeg
  decodes (the Commodore 64's A64 multicolor, in NUT), long videos.
`ffmpeg`'s own decode (rawvideo rgb24, autorotated) is the reference the
decoders are compared with.
"""

import hashlib
import json
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests import ucf101_fixture as ucf
from tests.data import clips
from tests.local_http import LocalHttpServer, RangeHandler
from trainer.data import clip_ops
from trainer.data import prepare as prepare_lib
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data import tfrecord_writer
from trainer.data.manifest import Manifest
from trainer.data.sampling import Sampling
from trainer.data.video_decode import decode_video
from trainer.data.video_decode import open_video
from trainer.data.video_decode import VideoDecodeError

REPO = pathlib.Path(__file__).resolve().parents[2]
FFMPEG = shutil.which('ffmpeg') or 'ffmpeg'

SIZE = (48, 64)  # height, width of most fixtures, px
TEXTURE = 'testsrc2=size={w}x{h}:rate={rate}'
ODD = 'testsrc=size={w}x{h}:rate={rate}'  # testsrc2 rounds sizes to even
# A white square in the top-left corner of black frames: shows orientation.
CORNER = ('color=c=black:size={w}x{h}:rate={rate},'
          'drawbox=x=0:y=0:w=16:h=16:color=white:t=fill')
H264 = ('-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p')
AV1 = ('-c:v', 'libaom-av1', '-usage', 'realtime', '-cpu-used', '8',
       '-b:v', '200k', '-pix_fmt', 'yuv420p')
# In encoder options: store the video with a phone's display matrix.
PHONE = '+phone'
# max_seconds of the prepared folder: 50-frame segments at 25 fps.
MAX_SECONDS = 2
MIN_FRAMES = 8

# name: (source, frames, rate, size, encoder options, decoder, shape read)
CODECS = {
    'h264.mp4': (TEXTURE, 12, 25, SIZE, H264, 'opencv', SIZE),
    'hevc.mkv': (TEXTURE, 12, 25, SIZE,
                 ('-c:v', 'libx265', '-preset', 'ultrafast',
                  '-x265-params', 'log-level=none'), 'opencv', SIZE),
    'vp9.webm': (TEXTURE, 12, 25, SIZE,
                 ('-c:v', 'libvpx-vp9', '-deadline', 'realtime',
                  '-cpu-used', '8', '-b:v', '300k'), 'opencv', SIZE),
    'mpeg2.mpg': (TEXTURE, 12, 25, SIZE, ('-c:v', 'mpeg2video', '-q:v', '3'),
                  'opencv', SIZE),
    'h264_10bit.mkv': (TEXTURE, 12, 25, SIZE,
                       ('-c:v', 'libx264', '-preset', 'ultrafast',
                        '-pix_fmt', 'yuv420p10le'), 'opencv', SIZE),
    'gray_ffv1.mkv': (TEXTURE, 12, 25, SIZE,
                      ('-c:v', 'ffv1', '-pix_fmt', 'gray'), 'opencv', SIZE),
    'odd_vp9.webm': (ODD, 12, 25, (49, 65),
                     ('-c:v', 'libvpx-vp9', '-deadline', 'realtime',
                      '-cpu-used', '8', '-b:v', '300k', '-pix_fmt',
                      'yuv420p'), 'opencv', (49, 65)),
    'vfr_h264.mp4': (TEXTURE, 12, 25, SIZE,
                     ('-vf', 'setpts=N/(25*TB)+gte(N\\,6)*0.5/TB',
                      '-fps_mode', 'vfr', *H264), 'opencv', SIZE),
    'av1.mp4': (TEXTURE, 12, 25, SIZE, AV1, 'pyav', SIZE),
    'phone_h264.mp4': (CORNER, 10, 10, SIZE, (*H264, PHONE), 'opencv',
                       SIZE[::-1]),
    'phone_av1.mp4': (CORNER, 10, 10, SIZE, (*AV1, PHONE), 'pyav',
                      SIZE[::-1]),
}
# Mean absolute difference allowed from ffmpeg's decode, in 0..255 levels:
# the same 8-bit pixels (FFmpeg's swscale converts in all three), but
# 10-bit chroma is upsampled otherwise by the FFmpeg of the wheels (8.x)
# than by Debian's 5.1 (about 4 levels; a wrong bit depth would be ~100).
# PyAV's conversion of an odd-sized 4:2:0 frame differs at the edges.
MEAN_DIFFERENCE = {'h264_10bit.mkv': 8, 'odd_vp9.webm': 4}
# The prepared folder: class -> {video: (source, frames, rate, options)};
# four videos a class for --splits=train:2,test:2.
TREE = {
    'long': {
        'long_h264.mp4': (TEXTURE, 255, 25, H264),   # 50 x 4 + 55
        'long_av1.mp4': (TEXTURE, 120, 25, AV1),     # 50 + 50 + 20
        'long_vp9.webm': (TEXTURE, 75, 25, ('-c:v', 'libvpx-vp9', '-deadline',
                                            'realtime', '-cpu-used', '8')),
        'short_mpeg2.mpg': (TEXTURE, 20, 25, ('-c:v', 'mpeg2video')),
    },
    'phone': {
        'phone_h264.mp4': (CORNER, 10, 10, (*H264, PHONE)),
        'phone_av1.mp4': (CORNER, 10, 10, (*AV1, PHONE)),
        'audio_only.mp4': None,
        'truncated.mp4': None,
    },
}
# The records each written video of TREE becomes, and its decoder.
EXPECTED = {
    'long/long_h264.mp4': ([50, 50, 50, 50, 55], 'opencv'),
    'long/long_av1.mp4': ([50, 50, 20], 'pyav'),
    'long/long_vp9.webm': ([50, 25], 'opencv'),
    'long/short_mpeg2.mpg': ([20], 'opencv'),
    'phone/phone_h264.mp4': ([10], 'opencv'),
    'phone/phone_av1.mp4': ([10], 'pyav'),
}


def _ffmpeg(*args):
  if not shutil.which(FFMPEG):
    pytest.fail('These tests encode their videos with the ffmpeg CLI: '
                '`apt-get install ffmpeg` (.ci/run does).')
  subprocess.run([FFMPEG, '-v', 'error', '-nostdin', '-y', *map(str, args)],
                 check=True, capture_output=True, timeout=300)


def _encode(path, source, frames, rate, size, options):
  """Encodes `frames` of the lavfi `source` at `rate` fps and `size`
  `(height, width)` into `path` with the encoder `options`; with `PHONE`
  among them, stores a phone's display matrix too."""
  height, width = size
  phone = PHONE in options
  encoded = path.with_name('upright_' + path.name) if phone else path
  _ffmpeg('-f', 'lavfi', '-i', source.format(w=width, h=height, rate=rate),
          '-frames:v', frames, *(o for o in options if o != PHONE), encoded)
  if phone:  # ffmpeg 5.1 writes the tag of a stream copy as the matrix
    _ffmpeg('-i', encoded, '-c', 'copy', '-metadata:s:v:0', 'rotate=270',
            path)
    encoded.unlink()
  return path


def _audio_only(path):
  _ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=1',
          '-c:a', 'aac', path)
  return path


def _truncated(path, frames=100):
  """An H.264 MP4 of `frames`, index first, cut after 30% of its bytes."""
  whole = path.with_name('whole_' + path.name)
  _encode(whole, TEXTURE, frames, 25, SIZE,
          (*H264, '-g', '10', '-movflags', '+faststart'))
  data = whole.read_bytes()
  path.write_bytes(data[:len(data) * 3 // 10])
  whole.unlink()
  return path


def _reference(path, size):
  """`ffmpeg`'s own decode: uint8 RGB `(frames, height, width, 3)`,
  autorotated, every frame (`-fps_mode passthrough`)."""
  raw = subprocess.run(
      [FFMPEG, '-v', 'error', '-nostdin', '-i', str(path), '-f', 'rawvideo',
       '-pix_fmt', 'rgb24', '-fps_mode', 'passthrough', '-'],
      check=True, capture_output=True, timeout=120).stdout
  return np.frombuffer(raw, np.uint8).reshape(-1, *size, 3)


def _jpeg(frame_rgb, quality=90):
  return cv2.imencode('.jpg', frame_rgb[..., ::-1],
                      [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.fixture(scope='module')
def codecs(tmp_path_factory):
  """Folder of the `CODECS` encodes, plus audio_only.mp4, truncated.mp4 and
  c64.nut."""
  root = tmp_path_factory.mktemp('codecs')
  for name, (source, frames, rate, size, options, _, _) in CODECS.items():
    _encode(root / name, source, frames, rate, size, options)
  _encode(root / 'c64.nut', TEXTURE, 3, 25, (200, 320),
          ('-c:v', 'a64multi', '-f', 'nut'))
  _audio_only(root / 'audio_only.mp4')
  _truncated(root / 'truncated.mp4')
  return root


@pytest.fixture(scope='module')
def tree(codecs, tmp_path_factory):
  """`TREE` as a folder source: `video_dir/<class>/<video>`."""
  root = tmp_path_factory.mktemp('tree')
  for label, videos in TREE.items():
    (root / label).mkdir()
    for name, spec in videos.items():
      path = root / label / name
      if spec is None:  # the broken ones, as made for `codecs`
        shutil.copy(codecs / name, path)
      elif name in CODECS and CODECS[name][1] == spec[1]:
        shutil.copy(codecs / name, path)
      else:
        _encode(path, *spec[:3], SIZE, spec[3])
  return root


def _prepare(out, **flags):
  settings = dict(splits='train:2,test:2', short_side=256, shard_clips=2,
                  max_seconds=MAX_SECONDS, min_frames=MIN_FRAMES, workers=1)
  return prepare_lib.prepare(str(out), **dict(settings, **flags))


@pytest.fixture(scope='module')
def prepared(tree, tmp_path_factory):
  """`tree` prepared: `(output_dir, manifest, records)`, where records are
  `(split, shard, filename, segment, jpegs)` in file order."""
  out = tmp_path_factory.mktemp('prepared')
  manifest = _prepare(out, source='folder', video_dir=str(tree))
  return out, manifest, _read_records(out, manifest)


def _read_records(out, manifest):
  records = []
  for split, entry in manifest.splits.items():
    for shard in entry.shards:
      for record in tf.data.TFRecordDataset(str(out / shard.file)):
        clip = schema.parse_clip(record)
        records.append((split, shard.file, clip.filename.numpy().decode(),
                        int(clip.segment),
                        [j.numpy() for j in clip.jpeg_frames]))
  return records


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize('name', sorted(CODECS))
def test_each_codec_decodes_as_ffmpeg_does(codecs, name):
  _, frames, _, _, _, decoder, shape = CODECS[name]
  reference = _reference(codecs / name, shape)
  assert len(reference) == frames
  video = decode_video(codecs / name)
  assert video.decoder == decoder
  assert video.frames.shape == (frames, *shape, 3)
  assert video.source_size == shape
  tolerance = MEAN_DIFFERENCE.get(name, 1)
  assert np.abs(video.frames.astype(int) - reference).mean() < tolerance
  # PyAV reads every one of them alike, as the fallback it is.
  by_pyav = decode_video(codecs / name, decoders=('pyav',))
  assert by_pyav.decoder == 'pyav'
  assert by_pyav.frames.shape == video.frames.shape
  assert np.abs(by_pyav.frames.astype(int) - reference).mean() < tolerance


@pytest.mark.parametrize('name, decoders', [
    ('phone_h264.mp4', ('opencv',)),
    ('phone_h264.mp4', ('pyav',)),
    ('phone_av1.mp4', ('opencv', 'pyav')),
])
def test_rotation_metadata_turns_frames_upright(codecs, name, decoders):
  # Stored 64 wide x 48 high with the square top-left, shown a quarter turn
  # clockwise: 48 wide x 64 high, the square top-right.
  video = decode_video(codecs / name, decoders=decoders)
  assert video.decoder == decoders[-1]
  assert video.frames.shape == (10, 64, 48, 3)
  corner = video.frames[:, 2:14, -14:-2].mean()
  rest = video.frames[:, 20:, :].mean()
  assert corner > 200 and rest < 30, (corner, rest)
  assert video.frames[:, 2:14, 2:14].mean() < 30


def test_rate_reduction_and_downscale_work_on_the_pyav_path(codecs):
  video = decode_video(codecs / 'av1.mp4', fps=12.5, short_side=24)
  assert video.decoder == 'pyav'
  assert (video.source_fps, video.fps) == (25.0, 12.5)
  assert video.frames.shape == (6, 24, 32, 3)
  reference = _reference(codecs / 'av1.mp4', SIZE)[::2]
  resized = np.stack([cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA)
                      for f in reference])
  assert np.abs(video.frames.astype(int) - resized).mean() < 3


def _frames_ffmpeg_decodes(path):
  """Frames `ffmpeg` decodes of a broken file, counted on its raw output."""
  raw = subprocess.run(
      [FFMPEG, '-v', 'quiet', '-nostdin', '-i', str(path), '-f', 'rawvideo',
       '-pix_fmt', 'rgb24', '-fps_mode', 'passthrough', '-'],
      capture_output=True, timeout=120, check=False).stdout
  return len(raw) // (SIZE[0] * SIZE[1] * 3)


@pytest.mark.parametrize('name, decoders, reason', [
    ('audio_only.mp4', ('opencv', 'pyav'), 'no video stream'),
    ('audio_only.mp4', ('opencv',), 'no video stream'),
    ('av1.mp4', ('opencv',), 'codec av1: no decoder'),
    ('c64.nut', ('opencv', 'pyav'), 'codec unknown: no decoder'),
    ('truncated.mp4', ('opencv', 'pyav'), 'truncated after frame {}'),
    ('truncated.mp4', ('pyav',), 'truncated after frame {}'),
])
def test_a_video_that_cannot_be_used_names_the_cause(codecs, name, decoders,
                                                     reason):
  path = codecs / name
  if '{}' in reason:
    decoded = _frames_ffmpeg_decodes(path)
    assert 0 < decoded < 50  # fewer than half of the 100 announced
    reason = reason.format(decoded)
  with pytest.raises(VideoDecodeError) as caught:
    decode_video(path, decoders=decoders)
  assert caught.value.reason == reason


def test_frames_come_one_at_a_time(codecs):
  whole = decode_video(codecs / 'av1.mp4').frames
  with open_video(codecs / 'av1.mp4') as stream:
    assert (stream.decoder, stream.fps, stream.source_size) == (
        'pyav', 25.0, SIZE)
    for index, frame in enumerate(stream):
      np.testing.assert_array_equal(frame, whole[index])
  assert stream.num_frames == len(whole) == 12
  with pytest.raises(RuntimeError, match='read already'):
    iter(stream)


# ----------------------------------------------------------- preparation


def test_records_reasons_and_decoders_of_a_prepared_tree(tree, prepared):
  out, manifest, records = prepared
  assert {s.video: s.reason for s in manifest.skipped} == {
      'phone/audio_only.mp4': 'no video stream',
      'phone/truncated.mp4':
          f'truncated after frame '
          f'{_frames_ffmpeg_decodes(tree / "phone/truncated.mp4")}',
  }
  assert {v.video: v.decoder for v in manifest.videos} == {
      name: decoder for name, (_, decoder) in EXPECTED.items()}
  for video in manifest.videos:
    lengths = EXPECTED[video.video][0]
    assert (video.segments, video.frames) == (len(lengths), sum(lengths))
  assert Manifest.read(str(out)) == manifest
  assert manifest.frames.max_seconds == MAX_SECONDS
  assert manifest.settings['max_seconds'] == MAX_SECONDS
  total = sum(split.num_clips for split in manifest.splits.values())
  assert total == len(records) == sum(
      len(lengths) for lengths, _ in EXPECTED.values())
  assert sum(split.num_frames for split in manifest.splits.values()) == sum(
      sum(lengths) for lengths, _ in EXPECTED.values())


def test_segments_are_consecutive_complete_and_in_one_split(tree, prepared):
  _, manifest, records = prepared
  by_video = {}
  for split, shard, name, segment, jpegs in records:
    by_video.setdefault(name, []).append((split, shard, segment, jpegs))
  assert sorted(by_video) == sorted(EXPECTED)
  shard_of = {v.video: v.shard for v in manifest.videos}
  for name, parts in by_video.items():
    lengths, _ = EXPECTED[name]
    assert len({split for split, _, _, _ in parts}) == 1, name
    assert {shard for _, shard, _, _ in parts} == {shard_of[name]}
    assert [segment for _, _, segment, _ in parts] == list(range(len(lengths)))
    assert [len(jpegs) for _, _, _, jpegs in parts] == lengths
    # Every frame once, in order: the JPEGs of the whole video's decode.
    whole = [_jpeg(f) for f in decode_video(tree / name,
                                            short_side=256).frames]
    assert [j for _, _, _, jpegs in parts for j in jpegs] == whole, name


def test_records_of_a_rotated_video_are_upright(prepared):
  _, _, records = prepared
  for _, _, name, _, jpegs in records:
    if name.startswith('phone/'):
      frame = tf.io.decode_jpeg(jpegs[0]).numpy()
      assert frame.shape == (64, 48, 3)
      assert frame[2:14, -14:-2].mean() > 200 and frame[20:].mean() < 30


@pytest.mark.parametrize('max_seconds, fps, lengths', [
    (None, 25.0, [255]),           # no limit: one record
    (4, 25.0, [100, 100, 55]),
    (10.2, 25.0, [255]),           # 255 frames are 10.2 s
    (3.96, 25.0, [99, 99, 57]),
    (2, 25.0, [50, 50, 50, 50, 55]),  # 5 frames < 8 join the last
    (0.04, 25.0, [8] * 30 + [15]),    # 1 frame: min_frames is the least
    (4, 0.0, [100, 100, 55]),      # an unknown rate counts as 25 fps
    (4, 12.5, [50] * 4 + [55]),
])
def test_a_video_is_cut_into_consecutive_segments(max_seconds, fps,
                                                  lengths):
  cut = []
  cutter = shard_worker.SegmentCutter(
      lambda index, frames: cut.append((index, list(frames))),
      shard_worker.segment_frames(max_seconds, fps, MIN_FRAMES), MIN_FRAMES)
  for frame in range(255):
    cutter.add(frame)
  cutter.finish()
  assert [index for index, _ in cut] == list(range(len(lengths)))
  assert [len(frames) for _, frames in cut] == lengths
  assert [i for _, frames in cut for i in frames] == list(range(255))
  assert (cutter.segments, cutter.frames) == (len(lengths), 255)


def test_segments_have_their_own_augmentation_seed_and_old_records_parse():
  jpegs = [_jpeg(clips.frame(index)) for index in range(20)]
  records = {segment: tfrecord_writer.encode_sequence_example(
      0, 'a', 'a/v.mp4', jpegs, segment=segment)
             for segment in (None, 0, 1, 2)}  # None: written before segments
  assert [int(schema.parse_clip(r).segment) for r in records.values()] == [
      0, 0, 1, 2]
  # The bytes TensorFlow's own protobuf writes (deterministic).
  example = tf.train.SequenceExample.FromString(records[1])
  assert example.SerializeToString(deterministic=True) == records[1]
  assert example.context.feature[schema.SEGMENT_KEY].int64_list.value == [1]
  sampling = Sampling(num_frames=4, frame_step=1, image_size=24)
  videos = {segment: clip_ops.train_clip(
      tf.constant(record), tf.constant('a.tfrecord'), tf.constant(
          3, tf.int64), sampling, 1)[0].numpy()
            for segment, record in records.items()}
  # Segment 0 keeps the seed records had before segments (the name's).
  np.testing.assert_array_equal(videos[0], videos[None])
  assert not np.array_equal(videos[1], videos[0])
  assert not np.array_equal(videos[2], videos[1])


def test_a_video_truncated_after_some_segments_leaves_no_record(tmp_path):
  folder = tmp_path / 'videos' / 'a'
  folder.mkdir(parents=True)
  _truncated(folder / 'cut.mp4', frames=300)
  _encode(folder / 'whole.mp4', TEXTURE, 30, 25, SIZE, H264)
  decoded = _frames_ffmpeg_decodes(folder / 'cut.mp4')
  assert 2 * 25 + MIN_FRAMES <= decoded < 150  # two 1 s segments written

  def shard(name, videos):
    out = tmp_path / name
    (out / shard_worker.STATE_DIR).mkdir(parents=True)
    return out, shard_worker.prepare_shard(shard_worker.ShardJob(
        file='train-00000-of-00001.tfrecord', output_dir=str(out),
        token=shard_worker.new_token(), source='folder',
        root=str(tmp_path / 'videos'), videos=videos, fps=None,
        short_side=None, min_frames=MIN_FRAMES, jpeg_quality=90,
        max_seconds=1.0))

  both, result = shard('both', (('a/whole.mp4', 'a', 0), ('a/cut.mp4', 'a', 0),
                                ('a/whole.mp4', 'a', 0)))
  assert result.skipped == (('a/cut.mp4', f'truncated after frame {decoded}'),)
  assert (result.num_clips, result.num_frames) == (2, 60)
  alone, _ = shard('alone', (('a/whole.mp4', 'a', 0), ('a/whole.mp4', 'a', 0)))
  name = 'train-00000-of-00001.tfrecord'
  assert (both / name).read_bytes() == (alone / name).read_bytes()


def _serve(folder, members):
  ucf.write_zip(folder / 'ucf101.zip', members)
  server = LocalHttpServer(folder, RangeHandler)
  return server, f'{server.url}/ucf101.zip'


def _digest(out):
  return {p.relative_to(out).as_posix(): hashlib.sha256(
      p.read_bytes()).hexdigest()
          for p in sorted(out.iterdir()) if p.is_file()}


def test_ucf101_videos_stream_alike_and_a_resumed_run_is_identical(
    tree, prepared, tmp_path):
  # UCF101 names; fold 1 tests on groups 1..7.
  members = {
      'UCF101/v_Archery_g01_c01.mp4': tree / 'long/long_av1.mp4',
      'UCF101/v_Archery_g08_c01.mp4': tree / 'long/long_h264.mp4',
      'UCF101/v_Bowling_g01_c01.mp4': tree / 'phone/phone_av1.mp4',
      'UCF101/v_Bowling_g08_c01.mp4': tree / 'phone/truncated.mp4',
      'UCF101/v_Bowling_g09_c01.mp4': tree / 'phone/phone_h264.mp4',
  }
  server, url = _serve(tmp_path, {name: path.read_bytes()
                                  for name, path in members.items()})
  try:
    flags = dict(source='ucf101', ucf101_url=url, split_by='group')
    whole = _prepare(tmp_path / 'whole', **flags)
    resumed_dir = tmp_path / 'resumed'
    _prepare(resumed_dir, **flags)
    # A run killed after its first shard: the others and the manifest gone.
    first = whole.splits['test'].shards[0].file
    for path in resumed_dir.iterdir():
      if path.name not in (first, shard_worker.STATE_DIR):
        path.unlink()
    for path in (resumed_dir / shard_worker.STATE_DIR).iterdir():
      if path.name not in (first + '.json', 'settings.json'):
        path.unlink()
    resumed = _prepare(resumed_dir, **flags)
  finally:
    server.stop()
  assert resumed == whole
  assert _digest(resumed_dir) == _digest(tmp_path / 'whole')
  assert {s.video: s.reason for s in whole.skipped} == {
      'UCF101/v_Bowling_g08_c01.mp4': dict(
          (s.video, s.reason) for s in prepared[1].skipped)[
              'phone/truncated.mp4']}
  assert {v.video: (v.decoder, v.segments) for v in whole.videos} == {
      'UCF101/v_Archery_g01_c01.mp4': ('pyav', 3),
      'UCF101/v_Archery_g08_c01.mp4': ('opencv', 5),
      'UCF101/v_Bowling_g01_c01.mp4': ('pyav', 1),
      'UCF101/v_Bowling_g09_c01.mp4': ('opencv', 1)}
  # The same JPEGs as from the folder, segment for segment.
  folder = {(name, segment): jpegs
            for _, _, name, segment, jpegs in prepared[2]}
  for _, _, name, segment, jpegs in _read_records(tmp_path / 'whole', whole):
    source = members[name].relative_to(tree).as_posix()
    assert folder[(source, segment)] == jpegs


# ------------------------------------------------------------------ memory

# 60 s of 640 x 480 at 25 fps: its 1500 RGB frames are 1.4 GB.
LONG_SIZE, LONG_FRAMES = (480, 640), 1500
RSS_LIMIT_MB = 400
# The worker's own peak, VmHWM: the high-water mark of the process's memory
# since it started Python. (ru_maxrss, of wait4 or RUSAGE_CHILDREN, would
# count the pytest process it was forked from, TensorFlow and all: Linux
# keeps the larger of the two across exec.)
_WORKER = textwrap.dedent('''
    import json, pickle, re, sys
    from trainer.data import shard_worker
    with open(sys.argv[1], 'rb') as f:
      job = pickle.load(f)
    result = shard_worker.prepare_shard(job).to_json()
    with open('/proc/self/status', encoding='ascii') as f:
      peak_kib = int(re.search(r'VmHWM:\\s+(\\d+) kB', f.read()).group(1))
    print(json.dumps(dict(result=result, peak_kib=peak_kib)))
''')


def test_a_workers_memory_does_not_grow_with_the_video(tmp_path):
  videos = tmp_path / 'videos' / 'long'
  videos.mkdir(parents=True)
  _encode(videos / 'minute.mp4', TEXTURE, LONG_FRAMES, 25, LONG_SIZE, H264)
  out = tmp_path / 'out'
  (out / shard_worker.STATE_DIR).mkdir(parents=True)
  job = shard_worker.ShardJob(
      file='train-00000-of-00001.tfrecord', output_dir=str(out),
      token=shard_worker.new_token(), source='folder',
      root=str(tmp_path / 'videos'), videos=(('long/minute.mp4', 'long', 0),),
      fps=None, short_side=None, min_frames=MIN_FRAMES, jpeg_quality=90,
      max_seconds=20.0)
  (tmp_path / 'job.pickle').write_bytes(pickle.dumps(job))
  # The worker in a process of its own, as a pool runs it (no TensorFlow).
  process = subprocess.run(
      [sys.executable, '-c', _WORKER, str(tmp_path / 'job.pickle')],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert process.returncode == 0, process.stderr[-2000:]
  report = json.loads(process.stdout)
  result = shard_worker.ShardResult.from_json(report['result'])
  assert (result.num_clips, result.num_frames, result.skipped) == (
      3, LONG_FRAMES, ())
  assert result.videos == (('long/minute.mp4', 'opencv', 3, LONG_FRAMES),)
  peak_mb = report['peak_kib'] / 1024
  assert peak_mb < RSS_LIMIT_MB, f'peak RSS {peak_mb:.0f} MB'
