"""`movinet-prepare` writes and deletes only its own files, one run at a time.

Foreign entries of `--output_dir` (even named `*.tmp-*`) survive, a foreign
folder needs `--overwrite`, a run holding the lock refuses a second one, an
`--output_dir` inside `--video_dir` is refused, and skipped folders are named.
"""

import concurrent.futures
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from trainer import files
from trainer.data import prepare as prepare_lib
from trainer.data import prepare_lock
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data import sources
from trainer.data.manifest import Manifest
from trainer.data.manifest import Skipped
from trainer.data.prepare_settings import PrepareError
from trainer.data.synthetic import generate_videos

STATE = shard_worker.STATE_DIR
LOCK = pathlib.Path(STATE, prepare_lock.LOCK_NAME)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """2 classes x 2 synthetic videos of 8 frames, 32 x 40."""
  root = tmp_path_factory.mktemp('videos')
  generate_videos(str(root), num_classes=2, videos_per_class=2, num_frames=8,
                  size=(32, 40))
  return root


def _prepare(videos, out, **extra):
  return prepare_lib.prepare(str(out), source='folder', video_dir=str(videos),
                             splits='train:1,test:1', workers=1, **extra)


def _tree(folder):
  """`{relative path: bytes or None for a folder}` of everything in it."""
  return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
          for p in sorted(pathlib.Path(folder).rglob('*'))}


def _user_files(folder):
  """Files and folders a user keeps beside the output, some named `.tmp-`.

  Returns:
    `{relative path: text}` of the files written.
  """
  kept = {'draft.tmp-1.txt': 'draft', 'notes.tmp-2023/a.txt': 'a',
          # Even a name shaped like prepare's own temporaries.
          f'x{files.TMP_MARK}1-0123456789abcdef': 'x'}
  for path, text in kept.items():
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_text(text)
  return kept


def test_user_tmp_files_survive_reruns(videos, tmp_path):
  out = tmp_path / 'out'
  _prepare(videos, out)
  kept = _user_files(out)
  before = _tree(out)
  for _ in range(2):
    _prepare(videos, out)
  assert {p: (out / p).read_text() for p in kept} == kept
  assert _tree(out) == before


def test_rerun_removes_exactly_the_recorded_leftovers(videos, tmp_path):
  out = tmp_path / 'out'
  manifest = _prepare(videos, out)
  kept = _user_files(out)
  (tmp_path / 'escape.tmp-1-0123456789abcdef').write_text('outside')
  shard = manifest.splits['train'].shards[0].file
  token = shard_worker.new_token()
  # What a killed run leaves: a half shard, a fetch folder, both recorded,
  # and a record cut short by the kill (its path was never created).
  leftovers = [files.temporary_name(shard, token),
               files.temporary_name(f'{STATE}/fetch-{shard}', token)]
  shard_worker.record_temporaries(str(out), [
      *leftovers, 'draft.tmp-1.txt', 'notes.tmp-2023',
      '../escape.tmp-1-0123456789abcdef'])
  with open(out / STATE / shard_worker.JOURNAL_NAME, 'a',
            encoding='utf-8') as f:
    f.write('"x.tmp-')
  (out / leftovers[0]).write_bytes(b'half a shard')
  (out / leftovers[1]).mkdir()
  (out / leftovers[1] / 'v.avi').write_bytes(b'part')

  assert _prepare(videos, out) == manifest
  for path in leftovers:
    assert not (out / path).exists()
  assert {p: (out / p).read_text() for p in kept} == kept
  assert (tmp_path / 'escape.tmp-1-0123456789abcdef').exists()
  assert not (out / STATE / shard_worker.JOURNAL_NAME).exists()
  assert not (out / LOCK).exists()


def test_foreign_output_dir_is_refused_unless_overwrite(videos, tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  kept = _user_files(out)
  (out / 'b.txt').write_text('b')
  before = _tree(out)
  with pytest.raises(PrepareError) as caught:
    _prepare(videos, out)
  message = str(caught.value)
  assert '\n' not in message and '--overwrite' in message
  assert 'b.txt, draft.tmp-1.txt, notes.tmp-2023/ and 1 more' in message
  assert _tree(out) == before

  manifest = _prepare(videos, out, overwrite=True)
  assert (out / schema.MANIFEST_NAME).exists()
  assert {p: (out / p).read_text() for p in kept} == kept
  # Now a previous preparation: resumed without --overwrite.
  assert _prepare(videos, out) == manifest


def test_error_mid_run_releases_the_lock_and_removes_temporaries(videos,
                                                                 tmp_path):
  # A foreign folder named as the (only) train shard: the rename fails.
  out = tmp_path / 'out'
  blocker = out / schema.shard_name('train', 0, 1)
  blocker.mkdir(parents=True)
  (blocker / 'mine.txt').write_text('mine')
  with pytest.raises(OSError):
    _prepare(videos, out, overwrite=True, shard_clips=8)
  assert (blocker / 'mine.txt').read_text() == 'mine'
  assert not (out / LOCK).exists()
  assert not [p for p in out.rglob('*') if files.TMP_MARK in p.name]
  assert not (out / STATE / shard_worker.JOURNAL_NAME).exists()


def test_second_run_is_refused_while_the_lock_is_held(videos, tmp_path):
  out = tmp_path / 'out'
  manifest = _prepare(videos, out)
  token = shard_worker.new_token()
  prepare_lock.acquire_lock(str(out), token)  # a live run: this process
  before = _tree(out)
  holder = json.loads((out / LOCK).read_text())
  assert holder == {'pid': os.getpid(), 'host': socket.gethostname(),
                    'token': token}
  try:
    with pytest.raises(PrepareError) as caught:
      _prepare(videos, out)
    message = str(caught.value)
    assert '\n' not in message
    assert f'pid {os.getpid()} on {socket.gethostname()}' in message
    assert _tree(out) == before
  finally:
    prepare_lock.release_lock(str(out), token)
  assert not (out / LOCK).exists()
  assert _prepare(videos, out) == manifest


def test_prepare_once_waits_for_the_run_holding_the_lock(videos, tmp_path,
                                                       caplog):
  # What the workers of one machine do with the quickstart's data: one
  # holds the lock and writes; another waits for it and prepares nothing.
  out = tmp_path / 'out'
  (out / STATE).mkdir(parents=True)
  token = shard_worker.new_token()
  prepare_lock.acquire_lock(str(out), token)  # a live run: this process

  def the_other_run():  # writes `out` whole, then releases its lock
    time.sleep(1.0)
    staged = _prepare(videos, tmp_path / 'staged')
    shutil.copytree(tmp_path / 'staged', out, dirs_exist_ok=True)
    prepare_lock.release_lock(str(out), token)
    return staged

  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    other = pool.submit(the_other_run)
    with caplog.at_level(logging.INFO):
      prepare_lib.prepare_once(str(out), source='folder',
                               video_dir=str(videos), splits='train:1,test:1',
                               workers=1)
    staged = other.result()
  mine = [r.getMessage() for r in caplog.records
          if r.threadName == threading.current_thread().name]
  assert any('Waiting for another process to prepare it' in m for m in mine)
  assert not any(m.startswith('prepared ') for m in mine)
  assert Manifest.read(str(out)) == staged


def test_run_that_ends_before_the_lock_is_taken_refuses_other_settings(
    videos, tmp_path, monkeypatch):
  # Two runs with other settings at once: the second one checked the folder
  # before the first wrote anything, and takes the lock once it is released.
  out = tmp_path / 'out'
  take_lock = prepare_lock.acquire_lock
  first = {}

  def first_run_ends_meanwhile(output_dir, token):
    if not first:
      first['started'] = True
      first['manifest'] = _prepare(videos, out, jpeg_quality=80)
    take_lock(output_dir, token)

  monkeypatch.setattr(prepare_lock, 'acquire_lock',
                      first_run_ends_meanwhile)
  with pytest.raises(PrepareError, match='differing: jpeg_quality'):
    _prepare(videos, out)
  manifest = Manifest.read(str(out))
  assert manifest == first['manifest']
  assert manifest.settings == json.loads(
      (out / STATE / prepare_settings.SETTINGS_NAME).read_text())
  assert not (out / LOCK).exists()


def test_stale_lock_is_taken_over_with_a_warning(videos, tmp_path, caplog):
  out = tmp_path / 'out'
  manifest = _prepare(videos, out)
  ended = subprocess.Popen(['true'])
  ended.wait()
  (out / LOCK).write_text(json.dumps(
      {'pid': ended.pid, 'host': socket.gethostname(), 'token': 'gone'}))
  with caplog.at_level(logging.INFO):
    assert _prepare(videos, out) == manifest
  assert any('Took over the stale lock' in m and str(ended.pid) in m
             for m in caplog.messages)
  assert not (out / LOCK).exists()


@pytest.mark.parametrize('inside', ['out', 'moving_left/out', '.'])
def test_output_dir_inside_video_dir_is_refused(videos, tmp_path, inside):
  tree = tmp_path / 'videos'
  shutil.copytree(videos, tree)
  before = _tree(tree)
  with pytest.raises(PrepareError) as caught:
    _prepare(tree, tree / inside)
  message = str(caught.value)
  assert '\n' not in message and '--output_dir' in message
  assert 'inside video_dir' in message
  assert _tree(tree) == before


def test_skipped_folders_are_named_in_summary_and_manifest(videos, tmp_path,
                                                           caplog):
  tree = tmp_path / 'videos'
  shutil.copytree(videos, tree)
  shutil.copytree(videos / 'moving_left', tree / '.hidden')
  (tree / 'Empty').mkdir()
  with caplog.at_level(logging.INFO):
    manifest = _prepare(tree, tmp_path / 'out')
  assert manifest.labels == ('moving_left', 'moving_right')
  assert manifest.skipped == (
      Skipped('.hidden/', sources.HIDDEN_FOLDER),
      Skipped('Empty/', sources.EMPTY_CLASS_FOLDER),
  )
  assert (f'skipped 2 folders: .hidden/ ({sources.HIDDEN_FOLDER}), Empty/ '
          f'({sources.EMPTY_CLASS_FOLDER})') in caplog.messages


def test_synthetic_data_dir_prepares_the_cache_s_dataset_once(tmp_path,
                                                              monkeypatch):
  prepared = []
  monkeypatch.setattr(prepare_lib, 'prepare_once',
                      lambda data_dir, **flags: prepared.append(
                          (data_dir, flags)))
  monkeypatch.setenv(files.CACHE_DIR_ENV, str(tmp_path / 'env'))
  assert prepare_lib.synthetic_data_dir(num_classes=3) == str(
      tmp_path / 'env' / 'synthetic-3')
  assert prepare_lib.synthetic_data_dir(str(tmp_path / 'mine')) == str(
      tmp_path / 'mine' / 'synthetic-4')
  assert prepared == [
      (str(tmp_path / 'env' / 'synthetic-3'),
       dict(source='synthetic', num_classes=3, workers=1)),
      (str(tmp_path / 'mine' / 'synthetic-4'),
       dict(source='synthetic', num_classes=4, workers=1))]
