"""Tests for trainer.model.checkpoint_source: real files, a real HTTP server."""

import io
import os
import re
import socket
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from tests import local_http
from trainer import files
from trainer.model import checkpoint_source
from trainer.model.checkpoint_source import resolve_checkpoint

_VALUES = [1.0, 2.0]
_VARIABLE_KEY = 'v/.ATTRIBUTES/VARIABLE_VALUE'
_ARCHIVE_ROOT = 'movinet_a0_base'


def _save_checkpoint(directory):
  """Saves a one-variable checkpoint in `directory`; returns its prefix."""
  directory.mkdir(parents=True, exist_ok=True)
  checkpoint = tf.train.Checkpoint(v=tf.Variable(_VALUES))
  return checkpoint.save(str(directory / 'ckpt'))


def _assert_reads_back(prefix):
  reader = tf.train.load_checkpoint(prefix)
  np.testing.assert_allclose(reader.get_tensor(_VARIABLE_KEY), _VALUES)


def _listing(directory):
  return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.fixture
def checkpoint_dir(tmp_path):
  """A directory laid out like the official archive: `movinet_a0_base/...`."""
  directory = tmp_path / 'source' / _ARCHIVE_ROOT
  _save_checkpoint(directory)
  return directory


@pytest.fixture
def archive(tmp_path, checkpoint_dir):
  path = tmp_path / f'{_ARCHIVE_ROOT}.tar.gz'
  with tarfile.open(path, 'w:gz') as tar:
    tar.add(checkpoint_dir, arcname=_ARCHIVE_ROOT)
  return path


class _QuietHandler(local_http.QuietHandler):
  """Serves files; `/truncated/*` promises more bytes than it sends."""

  def do_GET(self):
    if self.path.startswith('/truncated/'):
      self.send_response(200)
      self.send_header('Content-Length', '100000')
      self.end_headers()
      self.wfile.write(b'x' * 10)
      self.wfile.flush()
      self.close_connection = True
      return
    super().do_GET()

@pytest.fixture
def server(tmp_path):
  root = tmp_path / 'www'
  root.mkdir()
  running = local_http.LocalHttpServer(root, _QuietHandler)
  yield running
  running.stop()


def test_prefix_is_returned_as_is(checkpoint_dir, tmp_path):
  prefix = str(checkpoint_dir / 'ckpt-1')
  assert resolve_checkpoint(prefix, cache_dir=str(tmp_path / 'cache')) == prefix
  _assert_reads_back(prefix)


@pytest.mark.parametrize('keep_state_file', [True, False])
@pytest.mark.parametrize('from_parent', [False, True])
def test_directory(checkpoint_dir, tmp_path, keep_state_file, from_parent):
  if not keep_state_file:
    (checkpoint_dir / 'checkpoint').unlink()
  source = checkpoint_dir.parent if from_parent else checkpoint_dir
  resolved = resolve_checkpoint(str(source), cache_dir=str(tmp_path / 'cache'))
  assert resolved == str(checkpoint_dir / 'ckpt-1')
  _assert_reads_back(resolved)


def test_directory_with_several_checkpoints_lists_them(tmp_path):
  root = tmp_path / 'runs'
  first = _save_checkpoint(root / 'a')
  second = _save_checkpoint(root / 'b')
  with pytest.raises(ValueError, match='Several checkpoints') as error:
    resolve_checkpoint(str(root), cache_dir=str(tmp_path / 'cache'))
  assert first in str(error.value) and second in str(error.value)


def test_directory_without_checkpoint(tmp_path):
  empty = tmp_path / 'empty' / 'sub'
  empty.mkdir(parents=True)
  with pytest.raises(ValueError, match='No checkpoint'):
    resolve_checkpoint(str(empty.parent), cache_dir=str(tmp_path / 'cache'))


def test_archive_is_extracted_once_and_reused(archive, tmp_path, monkeypatch):
  cache = tmp_path / 'cache'
  resolved = resolve_checkpoint(str(archive), cache_dir=str(cache))
  _assert_reads_back(resolved)
  (extracted,) = (cache / 'extracted').iterdir()
  assert extracted.name.startswith(f'{_ARCHIVE_ROOT}-')
  assert resolved == str(extracted / _ARCHIVE_ROOT / 'ckpt-1')
  marker = extracted / 'marker'
  marker.write_text('kept')

  def refuse_to_open(*args, **kwargs):
    raise AssertionError(f'the second call opened the archive: {args} {kwargs}')

  monkeypatch.setattr(tarfile, 'open', refuse_to_open)
  assert resolve_checkpoint(str(archive), cache_dir=str(cache)) == resolved
  assert marker.exists(), 'the second call extracted the archive again'
  assert _listing(cache / 'extracted') == [extracted.name]


def test_cache_dir_defaults_to_environment(archive, tmp_path, monkeypatch):
  cache = tmp_path / 'env-cache'
  monkeypatch.setenv(files.CACHE_DIR_ENV, str(cache))
  resolved = resolve_checkpoint(str(archive))
  assert resolved.startswith(str(cache / 'extracted'))
  _assert_reads_back(resolved)


def test_url_is_downloaded_once(archive, server, tmp_path):
  (server.root / archive.name).write_bytes(archive.read_bytes())
  cache = tmp_path / 'cache'
  url = f'{server.url}/{archive.name}'
  resolved = resolve_checkpoint(url, cache_dir=str(cache))
  _assert_reads_back(resolved)
  (entry,) = (cache / 'downloads').iterdir()
  assert _listing(entry) == [archive.name]

  server.stop()
  assert resolve_checkpoint(url, cache_dir=str(cache)) == resolved


def _archive_of(tmp_path, name, values):
  """A `.tar.gz` named `name` of a one-variable checkpoint holding `values`."""
  directory = tmp_path / name / _ARCHIVE_ROOT
  directory.mkdir(parents=True)
  tf.train.Checkpoint(v=tf.Variable(values)).save(str(directory / 'ckpt'))
  path = tmp_path / name / f'{_ARCHIVE_ROOT}.tar.gz'
  with tarfile.open(path, 'w:gz') as tar:
    tar.add(directory, arcname=_ARCHIVE_ROOT)
  return path


def test_urls_with_one_file_name_get_their_own_entries(tmp_path):
  """Two servers serve different archives under the same file name."""
  values = {'a': [1.0, 2.0], 'b': [3.0, 4.0]}
  servers = {}
  try:
    for host, host_values in values.items():
      root = tmp_path / f'www-{host}' / 'other'
      root.mkdir(parents=True)
      archive_path = _archive_of(tmp_path, f'archive-{host}', host_values)
      (root / archive_path.name).write_bytes(archive_path.read_bytes())
      servers[host] = local_http.LocalHttpServer(root.parent, _QuietHandler)
    urls = {'a': f'{servers["a"].url}/other/{_ARCHIVE_ROOT}.tar.gz',
            'b': f'{servers["b"].url}/other/{_ARCHIVE_ROOT}.tar.gz'}
    cache = tmp_path / 'cache'
    resolved = {host: resolve_checkpoint(url, cache_dir=str(cache))
                for host, url in urls.items()}
  finally:
    for running in servers.values():
      running.stop()
  for host, prefix in resolved.items():
    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_allclose(reader.get_tensor(_VARIABLE_KEY), values[host])
  assert resolved['a'] != resolved['b']
  entries = list((cache / 'downloads').iterdir())
  assert len(entries) == 2
  assert all(_listing(e) == [f'{_ARCHIVE_ROOT}.tar.gz'] for e in entries)
  assert len(_listing(cache / 'extracted')) == 2
  # Both stay cached: with the servers gone each URL still finds its own.
  assert {host: resolve_checkpoint(url, cache_dir=str(cache))
          for host, url in urls.items()} == resolved


@pytest.mark.parametrize('path, reason', [
    ('/missing.tar.gz', 'HTTP 404'),
    ('/truncated/movinet_a0_base.tar.gz', 'IncompleteRead'),
])
def test_url_failure_leaves_nothing(server, tmp_path, path, reason):
  cache = tmp_path / 'cache'
  url = server.url + path
  with pytest.raises(checkpoint_source.CheckpointDownloadError) as error:
    resolve_checkpoint(url, cache_dir=str(cache))
  message = str(error.value)
  assert url in message and reason in message and '\n' not in message
  assert _listing(cache / 'downloads') == []
  assert _listing(cache / 'extracted') == []


def test_unreachable_url(tmp_path):
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  url = f'http://127.0.0.1:{port}/movinet_a0_base.tar.gz'
  cache = tmp_path / 'cache'
  with pytest.raises(OSError, match=re.escape(url)) as error:
    resolve_checkpoint(url, cache_dir=str(cache))
  assert isinstance(error.value, checkpoint_source.CheckpointDownloadError)
  assert 'refused' in str(error.value).lower()
  assert _listing(cache / 'downloads') == []


def test_url_that_is_not_an_archive(tmp_path):
  with pytest.raises(ValueError, match='must name a'):
    resolve_checkpoint('https://example.com/model.h5', cache_dir=str(tmp_path))


def _evil_member(kind):
  """Returns (TarInfo, payload) of an unsafe member of type `kind`."""
  if kind == 'absolute':
    return tarfile.TarInfo('/tmp/evil.txt'), b'evil'
  if kind == 'parent':
    return tarfile.TarInfo(f'{_ARCHIVE_ROOT}/../../evil.txt'), b'evil'
  info = tarfile.TarInfo(f'{_ARCHIVE_ROOT}/evil')
  info.type, info.linkname = {
      'symlink': (tarfile.SYMTYPE, '/etc/passwd'),
      'hardlink': (tarfile.LNKTYPE, f'{_ARCHIVE_ROOT}/ok.txt'),
      'fifo': (tarfile.FIFOTYPE, ''),
      'device': (tarfile.CHRTYPE, ''),
  }[kind]
  return info, None


@pytest.mark.parametrize('kind, problem', [
    ('absolute', 'absolute path'),
    ('parent', '".."'),
    ('symlink', 'symlink'),
    ('hardlink', 'hardlink'),
    ('fifo', 'device or fifo'),
    ('device', 'device or fifo'),
])
def test_unsafe_archive_is_refused(tmp_path, kind, problem):
  path = tmp_path / 'evil.tar.gz'
  evil, payload = _evil_member(kind)
  with tarfile.open(path, 'w:gz') as tar:
    ok = tarfile.TarInfo(f'{_ARCHIVE_ROOT}/ok.txt')
    ok.size = 2
    tar.addfile(ok, io.BytesIO(b'ok'))
    if payload is not None:
      evil.size = len(payload)
    tar.addfile(evil, io.BytesIO(payload) if payload is not None else None)
  cache = tmp_path / 'cache'
  with pytest.raises(ValueError) as error:
    resolve_checkpoint(str(path), cache_dir=str(cache))
  message = str(error.value)
  assert repr(evil.name) in message and str(path) in message
  assert problem in message
  assert _listing(cache / 'extracted') == []
  assert not (tmp_path / 'evil.txt').exists()


@pytest.mark.parametrize('content', ['random', 'truncated'])
def test_corrupt_archive(archive, tmp_path, content):
  path = tmp_path / 'corrupt' / 'bad.tar.gz'
  path.parent.mkdir()
  data = archive.read_bytes()
  path.write_bytes(np.random.default_rng(0).bytes(4096) if content == 'random'
                   else data[:len(data) // 2])
  cache = tmp_path / 'cache'
  with pytest.raises(ValueError, match=re.escape(str(path))):
    resolve_checkpoint(str(path), cache_dir=str(cache))
  assert _listing(cache / 'extracted') == []


@pytest.mark.parametrize('name, problem', [
    ('nowhere/ckpt-1', 'does not exist'),
    ('notes.txt', 'neither an archive nor a checkpoint prefix'),
])
def test_unusable_source(tmp_path, name, problem):
  (tmp_path / 'notes.txt').write_text('not a checkpoint')
  source = str(tmp_path / name)
  with pytest.raises(ValueError, match=problem) as error:
    resolve_checkpoint(source, cache_dir=str(tmp_path / 'cache'))
  assert 'source=' in str(error.value) and source in str(error.value)
