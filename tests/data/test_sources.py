"""Tests for trainer.data.sources: real folders, real zips, a real server."""

import os
import random
import socket
import time
import types
import urllib.error
import urllib.request
import uuid
import zipfile

import pytest

from tests import local_http
from tests import ucf101_fixture as ucf
from trainer.data import sources
from trainer.data import splits
from trainer.data.sources import VideoEntry

_BIG = random.Random(0).randbytes(200_000)  # Larger than remotezip's 64 KiB.
# Flat, as UCF101_videos.zip (see tests/ucf101_fixture.py), with what a
# careless archive also holds. Bytes only: these tests are about names and
# bytes; the real videos are in the `ucf101_zips` fixture.
_MEMBERS = {
    'UCF101/': b'',
    'UCF101/v_ApplyEyeMakeup_g01_c01.avi': _BIG,
    'UCF101/v_ApplyEyeMakeup_g08_c02.avi': b'eye makeup g08',
    'UCF101/v_Archery_g22_c01.avi': b'archery' * 1000,
    'UCF101/v_Café_g03_c01.mp4': b'non-ascii name',
    'UCF101/vidéo ü.mp4': b'not a UCF101 name',
    'UCF101/notes.txt': b'not a video',
    'UCF101/Archery/v_ApplyEyeMakeup_g02_c01.avi': b'in another class',
    'top_level.avi': b'not a UCF101 name',
    '__MACOSX/UCF101/._v_Archery_g22_c01.avi': b'resource fork',
}
_VIDEOS = [
    VideoEntry('UCF101/v_ApplyEyeMakeup_g01_c01.avi', 'ApplyEyeMakeup', 'g01'),
    VideoEntry('UCF101/v_ApplyEyeMakeup_g08_c02.avi', 'ApplyEyeMakeup', 'g08'),
    VideoEntry('UCF101/v_Archery_g22_c01.avi', 'Archery', 'g22'),
    VideoEntry('UCF101/v_Café_g03_c01.mp4', 'Café', 'g03'),
]


def _write_zip(path, members):
  """Writes exactly `members` ({name: bytes}); even ones stored, odd ones
  deflated."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, 'w') as archive:
    for index, (name, data) in enumerate(members.items()):
      info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
      info.compress_type = (zipfile.ZIP_DEFLATED if index % 2
                            else zipfile.ZIP_STORED)
      archive.writestr(info, data)
  return path


def _unused_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


@pytest.fixture(scope='module')
def range_server(tmp_path_factory):
  """One server per module: stopping one takes up to 0.5 s."""
  served = local_http.LocalHttpServer(tmp_path_factory.mktemp('www'),
                                      handler=local_http.RangeHandler)
  yield served
  served.stop()


@pytest.fixture
def www(range_server):
  """This test's own folder on the shared server."""
  folder = range_server.root / uuid.uuid4().hex
  folder.mkdir()
  return folder


@pytest.fixture
def server(range_server, www):
  """`server.url` serves `www`."""
  return types.SimpleNamespace(url=f'{range_server.url}/{www.name}')


@pytest.fixture
def zip_url(www, server):
  _write_zip(www / 'UCF101_videos.zip', _MEMBERS)
  return f'{server.url}/UCF101_videos.zip'


# The Range-capable test server itself.


@pytest.mark.parametrize('range_header,status,body,content_range', [
    (None, 200, slice(None), None),
    ('bytes=2-5', 206, slice(2, 6), 'bytes 2-5/20'),
    ('bytes=7-', 206, slice(7, None), 'bytes 7-19/20'),
    ('bytes=-3', 206, slice(-3, None), 'bytes 17-19/20'),
    ('bytes=-50', 206, slice(None), 'bytes 0-19/20'),
    ('bytes=15-100', 206, slice(15, None), 'bytes 15-19/20'),
    ('bytes=0-1,4-5', 200, slice(None), None),
])
def test_range_handler_answers_ranges(www, server, range_header, status, body,
                                      content_range):
  data = bytes(range(20))
  (www / 'data.bin').write_bytes(data)
  request = urllib.request.Request(f'{server.url}/data.bin')
  if range_header:
    request.add_header('Range', range_header)
  with urllib.request.urlopen(request, timeout=10) as response:
    assert response.status == status
    assert response.read() == data[body]
    assert response.headers['Content-Range'] == content_range
    assert response.headers['Accept-Ranges'] == 'bytes'


@pytest.mark.parametrize('range_header', ['bytes=20-', 'bytes=-0', 'bytes=9-3'])
def test_range_handler_refuses_unsatisfiable(www, server, range_header):
  (www / 'data.bin').write_bytes(bytes(20))
  request = urllib.request.Request(f'{server.url}/data.bin',
                                   headers={'Range': range_header})
  with pytest.raises(urllib.error.HTTPError) as error:
    urllib.request.urlopen(request, timeout=10)
  assert error.value.code == 416
  assert error.value.headers['Content-Range'] == 'bytes */20'


def test_range_handler_head_gives_length_without_body(www, server):
  (www / 'data.bin').write_bytes(bytes(1234))
  request = urllib.request.Request(f'{server.url}/data.bin', method='HEAD')
  with urllib.request.urlopen(request, timeout=10) as response:
    assert response.headers['Content-Length'] == '1234'
    assert response.headers['Accept-Ranges'] == 'bytes'
    assert response.read() == b''


# UCF101 zip over HTTP.


def test_list_ucf101_labels_by_file_name_and_skips_with_reasons(zip_url):
  listing = sources.list_ucf101(zip_url)
  assert listing.entries == _VIDEOS
  assert listing.labels == ['ApplyEyeMakeup', 'Archery', 'Café']
  assert listing.skipped == [
      ('UCF101/Archery/v_ApplyEyeMakeup_g02_c01.avi',
       sources.FOLDER_OF_ANOTHER_CLASS),
      ('UCF101/notes.txt', sources.NOT_A_VIDEO),
      ('UCF101/vidéo ü.mp4', sources.NOT_UCF101_NAME),
      ('top_level.avi', sources.NOT_UCF101_NAME),
  ]


def _small_entries(layout):
  """What listing the `ucf101_zips` fixture should give."""
  return sorted(
      (VideoEntry(ucf.member_name(layout, folder_class, group, clip),
                  ucf.file_class(folder_class), f'g{group:02d}')
       for folder_class in ucf.SMALL_CLASSES
       for group, clip in ucf.SMALL_CLIPS), key=sources.entry_sort_key)


@pytest.mark.parametrize('layout', ucf.LAYOUTS)
def test_both_real_layouts_list_the_same_classes(ucf101_zips, layout):
  listing = sources.list_ucf101(ucf101_zips.url[layout])
  assert listing.entries == _small_entries(layout)
  # UCF101's own spelling: v_HandStandPushups_* in HandstandPushups/.
  assert listing.labels == ['ApplyEyeMakeup', 'Archery', 'HandStandPushups']
  assert not listing.skipped


@pytest.mark.parametrize('layout', ucf.LAYOUTS)
def test_fetch_by_range_gives_the_real_video(tmp_path, ucf101_zips, layout):
  members = ucf101_zips.members[layout]
  with sources.Ucf101Archive(ucf101_zips.url[layout]) as archive:
    entries = archive.listing().entries
    chosen = [entries[0], entries[len(entries) // 2], entries[-1]]
    for index, entry in enumerate(chosen):
      archive.fetch(entry.name, tmp_path / f'{index}.avi')
  for index, entry in enumerate(chosen):
    data = (tmp_path / f'{index}.avi').read_bytes()
    assert data == members[entry.name]
    assert ucf.decode_frame_count(data) == 40


def test_all_101_classes_and_the_tutorials_first_ten(ucf101_zips):
  listing = sources.list_ucf101(ucf101_zips.all_classes_url)
  assert len(listing.labels) == len(ucf.UCF101_CLASSES) == 101
  assert 'HandStandPushups' in listing.labels
  assert splits.select_classes(
      [e.label for e in listing.entries], 10) == list(ucf.TUTORIAL_CLASSES)


@pytest.mark.parametrize('names,entries,skipped', [
    # Folders that name no class are containers, however deep.
    (['UCF-101/', 'UCF-101/Archery/',
      'data/UCF-101/Archery/v_Archery_g01_c01.avi'],
     [VideoEntry('data/UCF-101/Archery/v_Archery_g01_c01.avi', 'Archery',
                 'g01')], []),
    # A folder is compared with the file's class ignoring case.
    (['UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi'],
     [VideoEntry('UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi',
                 'HandStandPushups', 'g01')], []),
    # A video filed under another class of the archive is skipped.
    (['UCF-101/Archery/v_Archery_g01_c01.avi',
      'UCF-101/Archery/v_Bowling_g02_c01.avi',
      'UCF-101/Bowling/v_Bowling_g01_c01.avi'],
     [VideoEntry('UCF-101/Archery/v_Archery_g01_c01.avi', 'Archery', 'g01'),
      VideoEntry('UCF-101/Bowling/v_Bowling_g01_c01.avi', 'Bowling', 'g01')],
     [('UCF-101/Archery/v_Bowling_g02_c01.avi',
       sources.FOLDER_OF_ANOTHER_CLASS)]),
    (['UCF101/v_Archery_g01.avi', 'UCF101/Archery_g01_c01.avi',
      'UCF101/.v_Archery_g01_c01.avi', 'UCF101/v_Archery_g01_c01.AVI'],
     [VideoEntry('UCF101/v_Archery_g01_c01.AVI', 'Archery', 'g01')],
     [('UCF101/Archery_g01_c01.avi', sources.NOT_UCF101_NAME),
      ('UCF101/v_Archery_g01.avi', sources.NOT_UCF101_NAME)]),
])
def test_ucf101_listing_rules(names, entries, skipped):
  listing = sources.ucf101_listing(names)
  assert listing.entries == entries
  assert listing.skipped == skipped


def _fetch(url, name, destination):
  """One member, fetched over its own connection."""
  with sources.Ucf101Archive(url) as archive:
    return archive.fetch(name, destination)


@pytest.mark.parametrize('entry', _VIDEOS, ids=lambda e: e.name)
def test_fetch_member_gives_identical_bytes_atomically(tmp_path, zip_url,
                                                       entry):
  destination = tmp_path / 'out' / 'new folder' / 'video.bin'
  written = _fetch(zip_url, entry.name, destination)
  assert written == str(destination)
  assert destination.read_bytes() == _MEMBERS[entry.name]
  assert os.listdir(destination.parent) == ['video.bin']


def test_archive_fetches_many_members_and_replaces_existing(tmp_path,
                                                            zip_url):
  existing = tmp_path / 'out' / 'existing.avi'
  existing.parent.mkdir()
  existing.write_bytes(b'stale')
  with sources.Ucf101Archive(zip_url) as archive:
    entries = archive.listing().entries
    archive.fetch(entries[2].name, existing)
    for index, entry in enumerate(entries):
      archive.fetch(entry.name, tmp_path / 'out' / f'{index}.bin')
  assert existing.read_bytes() == _MEMBERS[entries[2].name]
  for index, entry in enumerate(entries):
    assert (tmp_path / 'out' / f'{index}.bin').read_bytes() == (
        _MEMBERS[entry.name])


@pytest.mark.parametrize('bad_name', [
    '/abs/x.avi',
    'UCF101/../x.avi',
    '../x.avi',
    'UCF-101/Archery/../../x.avi',
    'UCF101\\..\\x.avi',
    'C:/x.avi',
])
def test_unsafe_member_name_refuses_whole_archive(tmp_path, www, server,
                                                  bad_name):
  members = dict(_MEMBERS)
  members[bad_name] = b'escape'
  _write_zip(www / 'evil.zip', members)
  url = f'{server.url}/evil.zip'
  with zipfile.ZipFile(www / 'evil.zip') as archive:
    assert bad_name in archive.namelist()  # Stored as written, not cleaned.
  with pytest.raises(ValueError, match='Refusing') as error:
    sources.list_ucf101(url)
  assert repr(bad_name) in str(error.value)
  destination = tmp_path / 'out' / 'video.avi'
  with pytest.raises(ValueError, match='Refusing'):
    _fetch(url, _VIDEOS[0].name, destination)
  assert not destination.parent.exists()


@pytest.mark.parametrize('name,match', [
    ('UCF101/v_Archery_g99_c01.avi', 'not a file in the archive'),
    ('UCF101/', 'not a file in the archive'),
    ('UCF101/../x.avi', "has a '..' component"),
])
def test_fetch_refuses_unknown_or_unsafe_name(tmp_path, zip_url, name, match):
  destination = tmp_path / 'video.avi'
  with pytest.raises(ValueError, match=match):
    _fetch(zip_url, name, destination)
  assert not destination.exists()


def test_fetch_corrupt_member_fails_and_leaves_nothing(tmp_path, www, server):
  path = _write_zip(www / 'corrupt.zip', {'UCF101/A/v_A_g01_c01.avi': _BIG})
  data = bytearray(path.read_bytes())
  data[data.index(_BIG[:64]) + 1000] ^= 0xFF  # Stored, so the bytes are raw.
  path.write_bytes(bytes(data))
  out = tmp_path / 'out'
  with pytest.raises(sources.RemoteArchiveError, match='CRC'):
    _fetch(f'{server.url}/corrupt.zip', 'UCF101/A/v_A_g01_c01.avi',
           out / 'v.avi')
  assert os.listdir(out) == []


def _unreachable(www, server):
  del www, server
  return f'http://127.0.0.1:{_unused_port()}/UCF101_videos.zip'


def _missing(www, server):
  del www
  return f'{server.url}/missing.zip'


def _not_a_zip(www, server):
  (www / 'page.zip').write_bytes(b'<html>not a zip</html>' * 100)
  return f'{server.url}/page.zip'


@pytest.mark.parametrize('make_url,reason', [
    (_unreachable, 'Connection'),
    (_missing, '404'),
    (_not_a_zip, 'not a valid zip'),
])
def test_unreadable_url_raises_clear_error_quickly(www, server, make_url,
                                                   reason):
  url = make_url(www, server)
  started = time.monotonic()
  with pytest.raises(sources.RemoteArchiveError) as error:
    sources.list_ucf101(url, timeout_s=5)
  assert time.monotonic() - started < 5
  message = str(error.value)
  assert url in message and reason in message and '--ucf101_url' in message
  assert isinstance(error.value, OSError)


def test_server_without_range_support_is_named(www):
  _write_zip(www / 'UCF101_videos.zip', _MEMBERS)
  plain = local_http.LocalHttpServer(www)  # Always answers 200, whole file.
  try:
    with pytest.raises(sources.RemoteArchiveError, match='Range requests'):
      sources.list_ucf101(f'{plain.url}/UCF101_videos.zip')
  finally:
    plain.stop()


def test_silent_server_times_out(tmp_path):
  del tmp_path
  with socket.socket() as silent:  # Accepts connections, never answers.
    silent.bind(('127.0.0.1', 0))
    silent.listen()
    url = f'http://127.0.0.1:{silent.getsockname()[1]}/x.zip'
    started = time.monotonic()
    with pytest.raises(sources.RemoteArchiveError, match='timed out'):
      sources.list_ucf101(url, timeout_s=0.5)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize('url', ['ftp://host/x.zip', '/data/UCF101.zip', None])
def test_non_http_url_is_rejected(url):
  with pytest.raises(ValueError, match=r'url=.*http://.*--ucf101_url'):
    sources.list_ucf101(url)


def test_default_url_is_the_tutorials():
  assert sources.DEFAULT_UCF101_URL == (
      'https://storage.googleapis.com/thumos14_files/UCF101_videos.zip')


# Folder source.


@pytest.mark.parametrize('filename,group', [
    ('v_ApplyEyeMakeup_g08_c01.avi', 'g08'),
    ('v_Apply_Eye_Makeup_g25_c07.mp4', 'g25'),
    ('v_ApplyEyeMakeup_g08_c01', None),
    ('ApplyEyeMakeup_g08_c01.avi', None),
    ('v_ApplyEyeMakeup_08_c01.avi', None),
    ('my holiday.avi', None),
])
def test_parse_group(filename, group):
  assert sources.parse_group(filename) == group


def _make_tree(root, files):
  for name in files:
    path = root / name
    if name.endswith('/'):
      path.mkdir(parents=True)
    else:
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(b'x')


def test_list_folder_handles_spaces_unicode_hidden_and_skips(tmp_path):
  _make_tree(tmp_path, [
      'Apply Eye Makeup/v_ApplyEyeMakeup_g02_c03.AVI',
      'Apply Eye Makeup/v_ApplyEyeMakeup_g01_c01.avi',
      'Café/vidéo ü.mp4',
      'Café/.hidden.avi',
      'Café/notes.txt',
      'Café/sub/x.avi',
      '.git/x.avi',
      'Empty/readme.md',
      'stray.avi',
  ])
  listing = sources.list_folder(tmp_path)
  assert listing.entries == [
      VideoEntry('Apply Eye Makeup/v_ApplyEyeMakeup_g01_c01.avi',
                 'Apply Eye Makeup', 'g01'),
      VideoEntry('Apply Eye Makeup/v_ApplyEyeMakeup_g02_c03.AVI',
                 'Apply Eye Makeup', 'g02'),
      VideoEntry('Café/vidéo ü.mp4', 'Café', None),
  ]
  assert listing.skipped == [
      ('.git/', sources.HIDDEN_FOLDER),
      ('Café/notes.txt', sources.NOT_A_VIDEO),
      ('Café/sub/', sources.NESTED_FOLDER),
      ('Empty/', sources.EMPTY_CLASS_FOLDER),
      ('Empty/readme.md', sources.NOT_A_VIDEO),
      ('stray.avi', sources.NOT_IN_CLASS_FOLDER),
  ]
  for entry in listing.entries:
    assert (tmp_path / entry.name).is_file()


def test_list_folder_extensions_choose_videos(tmp_path):
  _make_tree(tmp_path, ['A/a.avi', 'A/b.mp4', 'B/c.MP4'])
  listing = sources.list_folder(str(tmp_path), extensions=('.mp4',))
  assert [e.name for e in listing.entries] == ['A/b.mp4', 'B/c.MP4']
  assert listing.skipped == [('A/a.avi', sources.NOT_A_VIDEO)]


@pytest.mark.parametrize('files,subpath,problem', [
    ([], 'missing', 'does not exist'),
    (['file.avi'], 'file.avi', 'is not a folder'),
    (['empty/'], 'empty', 'has no class subfolders'),
    (['flat/a.avi', 'flat/.hidden/x.avi'], 'flat',
     'has no class subfolders (hidden folders are skipped: .hidden)'),
    (['root/A/readme.txt', 'root/B/'], 'root',
     'has class folders but no videos'),
])
def test_list_folder_errors_name_directory(tmp_path, files, subpath, problem):
  _make_tree(tmp_path, files)
  video_dir = tmp_path / subpath
  with pytest.raises(ValueError) as error:
    sources.list_folder(video_dir)
  message = str(error.value)
  assert repr(str(video_dir)) in message and problem in message
  assert 'video_dir/ApplyEyeMakeup/' in message
