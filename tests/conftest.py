"""Fixtures shared by every test package, and the order tests run in."""

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
