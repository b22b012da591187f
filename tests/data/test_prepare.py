"""`movinet-prepare`: round trip, bad inputs, UCF101, resume, errors."""

import hashlib
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tests import ucf101_fixture as ucf
from tests.local_http import LocalHttpServer, RangeHandler
from trainer import files
from trainer.data import prepare as prepare_lib
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data.manifest import Manifest
from trainer.data.synthetic import generate_videos
from trainer.data.video_decode import decode_video

SHORT_SIDE = 48
REPO = pathlib.Path(__file__).resolve().parents[2]


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _shards(folder):
  return sorted(p.name for p in pathlib.Path(folder).glob('*.tfrecord'))


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """3 classes x 6 synthetic videos of 12 frames, 64 x 80."""
  root = tmp_path_factory.mktemp('videos')
  generate_videos(str(root), num_classes=3, videos_per_class=6, num_frames=12,
                  size=(64, 80))
  return root


@pytest.fixture(scope='module')
def prepared(videos, tmp_path_factory):
  out = tmp_path_factory.mktemp('prepared')
  manifest = prepare_lib.prepare(
      str(out), source='folder', video_dir=str(videos), splits='train:4,test:2',
      short_side=SHORT_SIDE, shard_clips=3, workers=1)
  return out, manifest


def test_round_trip_matches_source_frames_and_manifest(videos, prepared):
  out, manifest = prepared
  assert manifest == Manifest.read(str(out))
  assert manifest.labels == ('moving_left', 'moving_right', 'moving_up')
  assert not manifest.skipped
  seen = []
  for split, count in (('train', 12), ('test', 6)):
    entry = manifest.splits[split]
    assert entry.num_clips == count
    assert len(entry.shards) == count // 3
    for shard in entry.shards:
      records = _records(out / shard.file)
      assert len(records) == shard.num_clips == 3
      assert shard.sha256 == _sha256(out / shard.file)
      for record in records:
        clip = schema.parse_clip(record)
        name = clip.filename.numpy().decode()
        label = clip.label_text.numpy().decode()
        assert name.startswith(label + '/')
        assert manifest.labels[int(clip.label)] == label
        frames = np.stack([tf.io.decode_jpeg(j).numpy()
                           for j in clip.jpeg_frames])
        source = decode_video(str(videos / name), short_side=SHORT_SIDE).frames
        assert frames.shape == source.shape == (12, 48, 60, 3)
        assert np.abs(frames.astype(float) - source).mean() < 6
        seen.append((split, name))
  assert len(set(name for _, name in seen)) == 18


def test_model_garden_reader_decodes_a_record(prepared):
  video_input = pytest.importorskip('official.vision.dataloaders.video_input')
  out, manifest = prepared
  record = _records(out / manifest.splits['train'].shards[0].file)[0]
  decoder = video_input.Decoder(image_key=schema.IMAGE_KEY,
                                label_key=schema.LABEL_INDEX_KEY)
  decoded = decoder.decode(tf.constant(record))
  clip = schema.parse_clip(record)
  assert decoded[schema.LABEL_INDEX_KEY].numpy().tolist() == [
      int(clip.label)]
  images = decoded[schema.IMAGE_KEY]
  assert images.shape == (12,)
  assert tf.io.decode_jpeg(images[0]).shape == (48, 60, 3)


@pytest.mark.parametrize('size, short_side, expected', [
    ((120, 160), 256, (120, 160)),   # smaller than the maximum: kept
    ((120, 160), None, (120, 160)),  # the default maximum, 256, for folders
    ((240, 320), 128, (128, 171)),   # larger: downscaled, 320*128/240 rounded
    ((120, 160), 0, (120, 160)),     # 0 keeps every size
])
def test_short_side_is_a_maximum(tmp_path, size, short_side, expected):
  videos = tmp_path / 'videos'
  generate_videos(str(videos), num_classes=2, videos_per_class=2,
                  num_frames=8, size=size)
  out = tmp_path / 'out'
  manifest = prepare_lib.prepare(
      str(out), source='folder', video_dir=str(videos),
      splits='train:1,test:1', short_side=short_side, workers=1)
  assert manifest.frames.short_side == (
      prepare_settings.DEFAULT_SHORT_SIDE if short_side is None else short_side)
  shapes = {tuple(tf.io.decode_jpeg(j).shape)
            for split in manifest.splits.values()
            for shard in split.shards for r in _records(out / shard.file)
            for j in schema.parse_clip(r).jpeg_frames}
  assert shapes == {(*expected, 3)}


def test_folder_bad_inputs_are_skipped_with_reasons(videos, tmp_path, caplog):
  tree = tmp_path / 'tree'
  for label in ('moving_left', 'moving_right'):
    shutil.copytree(videos / label, tree / label)
  good = sorted((videos / 'moving_left').iterdir())[0].read_bytes()
  down = tree / 'moving_right'
  (down / 'empty.avi').write_bytes(b'')
  (down / 'text.avi').write_text('this is not a video\n' * 20)
  (down / 'truncated.avi').write_bytes(good[:len(good) // 2])
  (down / 'notes.txt').write_text('not listed')
  left = tree / 'moving_left'
  generate_videos(str(tmp_path / 'short'), num_classes=2, videos_per_class=1,
                  num_frames=3, size=(64, 80))
  shutil.copy(tmp_path / 'short/moving_left/moving_left_0000.avi',
              left / 'short.avi')
  (left / 'vidéo à ü 1.avi').write_bytes(good)
  (down / 'moving_right_0005.avi').unlink()
  out = tmp_path / 'out'
  with caplog.at_level(logging.INFO):
    manifest = prepare_lib.prepare(
        str(out), source='folder', video_dir=str(tree), splits='train:6,test:2',
        short_side=SHORT_SIDE, shard_clips=4, workers=1)
  skipped = {s.video: s.reason for s in manifest.skipped}
  truncated = skipped.pop('moving_right/truncated.avi')
  assert re.fullmatch(r'truncated after frame [1-5]', truncated), truncated
  assert skipped == {
      'moving_right/empty.avi': 'empty file',
      'moving_right/text.avi': 'cannot open',
      'moving_right/notes.txt': 'not a video extension',
      'moving_left/short.avi': 'too short: 3 frames < 8',
  }
  names = {schema.parse_clip(r).filename.numpy().decode()
           for split in manifest.splits.values()
           for shard in split.shards for r in _records(out / shard.file)}
  assert 'moving_left/vidéo à ü 1.avi' in names
  assert len(names) == sum(s.num_clips for s in manifest.splits.values())
  assert len(names) == 2 * 8 - 4
  assert any('prepared 12 clips in' in m and 'skipped 5' in m
             for m in caplog.messages)


def _write_ucf101_zip(path, videos, members):
  """A zip of exactly `members` {name: source video path or bytes}."""
  with zipfile.ZipFile(path, 'w') as archive:
    for name, data in members.items():
      info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
      archive.writestr(info, data if isinstance(data, bytes)
                       else (videos / data).read_bytes())


@pytest.fixture
def www(tmp_path):
  root = tmp_path / 'www'
  root.mkdir()
  server = LocalHttpServer(root, RangeHandler)
  yield root, server.url
  server.stop()


def _record_names(out, manifest):
  """`{split: [(file name, label text, frames)]}` read from the shards."""
  found = {}
  for split, entry in manifest.splits.items():
    found[split] = []
    for shard in entry.shards:
      for record in _records(out / shard.file):
        clip = schema.parse_clip(record)
        found[split].append((clip.filename.numpy().decode(),
                             clip.label_text.numpy().decode(),
                             int(clip.jpeg_frames.shape[0])))
  return found


@pytest.mark.parametrize('layout,workers', [(ucf.FLAT, 1), (ucf.FOLDERS, 2)])
def test_ucf101_group_split_in_both_real_layouts(ucf101_zips, layout, workers,
                                                 tmp_path):
  out = tmp_path / 'out'
  manifest = prepare_lib.prepare(
      str(out), source='ucf101', ucf101_url=ucf101_zips.url[layout],
      split_by='group', fold=1, short_side=SHORT_SIDE, shard_clips=4,
      workers=workers)
  assert manifest.labels == ('ApplyEyeMakeup', 'Archery', 'HandStandPushups')
  assert not manifest.skipped
  found = _record_names(out, manifest)
  for split, records in found.items():
    groups = {name.split('_')[-2] for name, _, _ in records}
    assert groups == ucf.expected_groups(split)  # no group on both sides
    for name, label, frames in records:
      assert name.split('/')[-1].startswith(f'v_{label}_')
      assert frames == 40
  assert len(found['test']) == manifest.splits['test'].num_clips == 9
  assert len(found['train']) == manifest.splits['train'].num_clips == 12
  assert not [p for p in out.rglob('*') if files.TMP_MARK in p.name]


def test_ucf101_flat_zip_by_count_picks_classes_by_file_name(ucf101_zips,
                                                             tmp_path, caplog):
  # The command that labelled every video 'UCF101' before.
  caplog.set_level(logging.INFO)
  out = tmp_path / 'out'
  manifest = prepare_lib.prepare(
      str(out), source='ucf101', ucf101_url=ucf101_zips.url[ucf.FLAT],
      num_classes=2, splits='train:2,test:1', short_side=SHORT_SIDE,
      workers=1)
  assert manifest.labels == ('ApplyEyeMakeup', 'Archery')
  found = _record_names(out, manifest)
  for split, count in (('train', 2), ('test', 1)):
    labels = sorted(label for _, label, _ in found[split])
    assert labels == sorted(['ApplyEyeMakeup', 'Archery'] * count)
  assert '2 classes: ApplyEyeMakeup, Archery' in caplog.messages
  assert 'clips per split: train 4, test 2' in caplog.messages


def test_ucf101_ten_classes_are_the_tutorials(ucf101_zips, tmp_path):
  out = tmp_path / 'out'
  manifest = prepare_lib.prepare(
      str(out), source='ucf101', ucf101_url=ucf101_zips.all_classes_url,
      num_classes=10, split_by='group', short_side=SHORT_SIDE, workers=1)
  assert manifest.labels == tuple(ucf.TUTORIAL_CLASSES)
  found = _record_names(out, manifest)
  for split, group in (('train', 'g08'), ('test', 'g01')):
    assert sorted(label for _, label, _ in found[split]) == list(
        ucf.TUTORIAL_CLASSES)
    assert {name.split('_')[-2] for name, _, _ in found[split]} == {group}


def _unused_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def _no_class_folders(tmp_path, www):
  (tmp_path / 'flat').mkdir()
  (tmp_path / 'flat/video.avi').write_bytes(b'x')
  return dict(source='folder', video_dir=str(tmp_path / 'flat')), 'video_dir'


def _too_many_per_class(tmp_path, www):
  return dict(source='folder', video_dir=str(tmp_path / 'videos'),
              splits='train:5,test:5'), '--splits'


def _unreachable_url(tmp_path, www):
  url = f'http://127.0.0.1:{_unused_port()}/ucf.zip'
  return dict(source='ucf101', ucf101_url=url), '--ucf101_url'


def _malicious_member(tmp_path, www):
  root, url = www
  _write_ucf101_zip(root / 'evil.zip', None,
                    {'UCF101/v_A_g01_c01.avi': b'x', '../evil.avi': b'x'})
  return dict(source='ucf101', ucf101_url=f'{url}/evil.zip'), '--ucf101_url'


@pytest.mark.parametrize('make_case', [_no_class_folders, _too_many_per_class,
                                       _unreachable_url, _malicious_member])
def test_errors_name_the_flag_and_write_nothing(videos, tmp_path, www,
                                                make_case):
  shutil.copytree(videos, tmp_path / 'videos')
  settings, flag = make_case(tmp_path, www)
  out = tmp_path / 'out'
  with pytest.raises(prepare_lib.PrepareError) as caught:
    prepare_lib.prepare(str(out), workers=1, **settings)
  message = str(caught.value)
  assert flag in message and '\n' not in message
  assert not out.exists()


def _command(video_dir, out, *extra):
  return [sys.executable, '-m', 'trainer.prepare_main', '--source=folder',
          f'--video_dir={video_dir}', f'--output_dir={out}',
          '--splits=train:6,test:2', '--short_side=256', '--shard_clips=1',
          '--workers=2', *extra]


def _run(command, timeout=120):
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, check=False)


def test_cli_error_exits_nonzero_with_one_line(videos, tmp_path):
  out = tmp_path / 'out'
  result = _run(_command(videos, out, '--splits=train:6,test:6'))
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines()
           if 'movinet-prepare: error' in line]
  assert len(lines) == 1 and '--splits' in lines[0], result.stderr[-2000:]
  assert not out.exists()


def test_killed_run_resumes_to_identical_output(tmp_path):
  # Larger frames (240 px, under --short_side=256 so kept) so there is time
  # to kill between shards.
  videos = tmp_path / 'videos'
  generate_videos(str(videos), num_classes=3, videos_per_class=8,
                  num_frames=40, size=(240, 320))
  killed, whole = tmp_path / 'killed', tmp_path / 'whole'
  process = subprocess.Popen(_command(videos, killed), cwd=REPO,
                             start_new_session=True,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  manifest = killed / schema.MANIFEST_NAME
  try:
    deadline = time.monotonic() + 120
    # Wait for a shard's record, written just after the shard: killing on
    # the shard alone may leave no complete shard to resume from.
    while not (killed.exists() and
               list(killed.glob(f'{shard_worker.STATE_DIR}/*.tfrecord.json'))):
      assert process.poll() is None, 'the run ended before any shard'
      assert time.monotonic() < deadline, 'no shard within 120 s'
      time.sleep(0.01)
    assert not manifest.exists(), 'the run finished before the kill'
  finally:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
  partial = _shards(killed)
  assert 1 <= len(partial) < 24 and not manifest.exists()

  resumed = _run(_command(videos, killed))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert 'Resuming' in resumed.stderr
  uninterrupted = _run(_command(videos, whole))
  assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]

  assert manifest.read_bytes() == (whole / schema.MANIFEST_NAME).read_bytes()
  assert _shards(killed) == _shards(whole) and len(_shards(whole)) == 24
  for name in _shards(whole):
    assert _sha256(killed / name) == _sha256(whole / name)
  assert not [p for p in killed.rglob('*') if files.TMP_MARK in p.name]

  with pytest.raises(prepare_lib.PrepareError, match='jpeg_quality'):
    prepare_lib.prepare(str(killed), source='folder', video_dir=str(videos),
                        splits='train:6,test:2', short_side=256,
                        shard_clips=1, jpeg_quality=80, workers=1)
