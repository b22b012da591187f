"""Fixtures shared by every test package, and the order tests run in."""

import logging
import subprocess
import sys
import types

import pytest

from tests import local_http
from tests import ucf101_fixture as ucf


@pytest.fixture(scope='session')
def ucf101_zips(tmp_path_factory):
  """UCF101 zips in both real layouts, served with Range support.

  `url[layout]` and `members[layout]` for `ucf.FLAT` (`UCF101_videos.zip`)
  and `ucf.FOLDERS` (`UCF101.zip`): `ucf.SMALL_CLASSES` x `ucf.SMALL_CLIPS`;
  `all_classes_url`: every UCF101 class, flat, two videos each. Written once
  per test run; nothing may change them.
  """
  root = tmp_path_factory.mktemp('ucf101_www')
  names = {ucf.FLAT: 'UCF101_videos.zip', ucf.FOLDERS: 'UCF101.zip'}
  members = {layout: ucf.small_members(layout) for layout in ucf.LAYOUTS}
  for layout in ucf.LAYOUTS:
    ucf.write_zip(root / layout / names[layout], members[layout])
  ucf.write_zip(root / 'all' / 'UCF101_videos.zip',
                ucf.all_class_members(ucf.FLAT))
  server = local_http.LocalHttpServer(root, handler=local_http.RangeHandler)
  yield types.SimpleNamespace(
      url={layout: f'{server.url}/{layout}/{names[layout]}'
           for layout in ucf.LAYOUTS},
      members=members,
      all_classes_url=f'{server.url}/all/UCF101_videos.zip')
  server.stop()


@pytest.fixture(autouse=True)
def absl_logger_level():
  """Each test starts with absl's logger at no level of its own, as a fresh
  process has it: TensorFlow used before absl's flags are parsed (as
  in-process tests and their module fixtures use it; a command parses them
  first) leaves that logger at WARNING for good (`tf.saved_model.save`
  does), and a later test reading INFO lines with `caplog` would see none.
  """
  logging.getLogger('absl').setLevel(logging.NOTSET)


@pytest.fixture(scope='session')
def videos(tmp_path_factory):
  """Two MP4 videos, `a.mp4` and `b.mp4`, in the folder `root`."""
  from tests import shared_export as shared  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp('videos')
  for seed, name in enumerate(('a', 'b')):
    shared.write_video(root / f'{name}.mp4', shared.video_frames(seed))
  return types.SimpleNamespace(root=root, a=root / 'a.mp4',
                               b=root / 'b.mp4')


@pytest.fixture(scope='session')
def stream_export(tmp_path_factory, videos):
  """The shared stream export (`tests/shared_export.py`).

  Attributes: `model` (Keras, stream), `path` (its export directory, every
  quantization), `info` (its `ExportInfo`), `calibration` (the clips int8
  calibrated on, of a prepared synthetic split), and `command`, a
  `movinet-classify` process on a missing video and `videos.a`, started on
  the model's `.keras` file before the export so that the two run side by
  side, with `missing`, the path it was given.
  """
  # Imported here: importing TensorFlow and absl when this file loads would
  # change logging for every test (caplog sees nothing of absl's loggers).
  # pylint: disable=import-outside-toplevel
  from tests import shared_export as shared
  from tests.training import run_helpers
  from trainer.export import calibration
  from trainer.export import exporter
  from trainer.model import build_movinet_classifier
  # pylint: enable=import-outside-toplevel
  model = build_movinet_classifier('a0', len(shared.LABELS), stream=True)
  folder = tmp_path_factory.mktemp('stream_export')
  model.save(folder / 'model.keras')
  missing = folder / 'missing.mp4'
  command = subprocess.Popen(
      [sys.executable, '-m', 'trainer.classify_main',
       f'--keras={folder / "model.keras"}', '--top_k=2', str(missing),
       str(videos.a)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  try:
    prepared = run_helpers.prepare_tiny(folder / 'data',
                                        splits='train:2,test:1')
    clips = calibration.read_clips(prepared, 'train', 8, shared.SAMPLING,
                                   shared.SIZE)
    info = exporter.export(
        model, shared.LABELS, str(folder / 'export'), image_size=shared.SIZE,
        sampling=shared.SAMPLING, calibration=clips,
        quantizations=('int8', 'float16', 'dynamic_range'))
    yield types.SimpleNamespace(
        model=model, path=str(folder / 'export'), info=info,
        calibration=clips, prepared=prepared, command=command,
        missing=str(missing))
  finally:
    if command.poll() is None:
      command.kill()
    command.communicate()


def _minutes(item) -> float:
  marker = item.get_closest_marker('slow')
  return marker.kwargs.get('minutes', 1.0) if marker else 0.0


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
  """Keeps each module on one worker, and runs the slowest modules first.

  pytest-xdist (`-n 2 --dist loadgroup`, see pytest.ini) keeps the tests of
  one `xdist_group` on one worker: here a module's, so its module fixtures
  run once, or that of the modules naming the same `XDIST_GROUP`, which
  share a session fixture. Tests marked `spread` (long, with no module
  fixture) are handed out one by one instead. Work goes out in this order,
  longest first: a long module that started last would run alone at the end
  while the other worker sits idle.
  """
  for item in items:
    if not item.get_closest_marker('spread'):
      item.add_marker(pytest.mark.xdist_group(
          getattr(item.module, 'XDIST_GROUP', item.module.__name__)))
  items.sort(key=lambda item: -_minutes(item))  # stable
