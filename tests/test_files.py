"""Atomic writes, hashes and the cache folder (`trainer.files`)."""

import hashlib
import os
import pathlib
import uuid

import pytest
import tensorflow as tf

from trainer import files


@pytest.mark.parametrize('contents', ['täxt\n', b'\x00\x01bytes'])
def test_a_write_replaces_the_file_whole(tmp_path, contents):
  path = tmp_path / 'out.json'
  path.write_text('previous')
  files.write_atomically(str(path), contents)
  read = path.read_bytes()
  assert read == (contents if isinstance(contents, bytes)
                  else contents.encode('utf-8'))
  assert os.listdir(tmp_path) == ['out.json']


def test_an_error_keeps_the_previous_file_and_no_temporary(tmp_path):
  path = tmp_path / 'model.keras'
  path.write_text('previous')
  with pytest.raises(RuntimeError, match='writer failed'):
    with files.replacing(str(path), suffix='.keras') as temporary:
      assert temporary.endswith('.keras') and files.TMP_MARK in temporary
      with open(temporary, 'w', encoding='utf-8') as f:
        f.write('half')
      raise RuntimeError('writer failed')
  assert path.read_text() == 'previous'
  assert os.listdir(tmp_path) == ['model.keras']


def test_a_token_names_the_temporary(tmp_path):
  path = str(tmp_path / 'shard.tfrecord')
  with files.replacing(path, token='12-00ff') as temporary:
    assert temporary == files.temporary_name(path, '12-00ff')
    assert temporary == f'{path}.tmp-12-00ff'
    with open(temporary, 'wb') as f:
      f.write(b'x')
  assert os.listdir(tmp_path) == ['shard.tfrecord']


def test_a_remote_path_goes_through_gfile():
  # `ram://` is TensorFlow's in-memory file system, which has the same
  # gfile interface as gs://.
  folder = f'ram://files-{uuid.uuid4().hex}'
  tf.io.gfile.makedirs(folder)
  path = f'{folder}/metrics.json'
  files.write_atomically(path, '{"top1": 1}')
  files.write_atomically(path, '{"top1": 0.5}')
  with tf.io.gfile.GFile(path) as f:
    assert f.read() == '{"top1": 0.5}'
  assert tf.io.gfile.listdir(folder) == ['metrics.json']
  assert files.sha256(path) == hashlib.sha256(b'{"top1": 0.5}').hexdigest()


def test_sha256_of_a_file_larger_than_a_chunk(tmp_path):
  data = os.urandom(3 * (1 << 20) + 5)
  (tmp_path / 'big').write_bytes(data)
  assert files.sha256(str(tmp_path / 'big')) == hashlib.sha256(
      data).hexdigest()


def test_the_cache_folder(monkeypatch, tmp_path):
  monkeypatch.delenv(files.CACHE_DIR_ENV, raising=False)
  assert files.cache_dir() == os.path.expanduser(
      '~/.cache/movinet-trainer')
  monkeypatch.setenv(files.CACHE_DIR_ENV, str(tmp_path / 'env'))
  assert files.cache_dir() == str(tmp_path / 'env')
  assert files.cache_dir('relative') == os.path.abspath('relative')


def test_a_hidden_temporary_starts_with_a_dot(tmp_path):
  path = str(tmp_path / 'v.avi')
  assert files.temporary_name(path, 'ab', '.avi', hidden=True) == str(
      tmp_path / '.v.avi.tmp-ab.avi')
  with files.replacing(path, suffix='.avi', hidden=True) as temporary:
    assert os.path.basename(temporary).startswith('.v.avi' + files.TMP_MARK)
    with open(temporary, 'wb') as f:
      f.write(b'video')
  assert os.listdir(tmp_path) == ['v.avi']


def test_a_folder_is_staged_hidden_and_renamed_whole(tmp_path):
  target = tmp_path / 'extracted'
  with pytest.raises(RuntimeError, match='extraction failed'):
    with files.replacing_directory(str(target)) as staging:
      assert os.path.basename(staging).startswith('.extracted' +
                                                  files.TMP_MARK)
      (pathlib.Path(staging) / 'half').write_text('half')
      raise RuntimeError('extraction failed')
  assert not os.listdir(tmp_path)
  with files.replacing_directory(str(target)) as staging:
    (pathlib.Path(staging) / 'a').write_text('mine')
  assert (target / 'a').read_text() == 'mine'
  # Another process finished the same folder first: theirs is kept.
  with files.replacing_directory(str(target)) as staging:
    (pathlib.Path(staging) / 'a').write_text('late')
  assert (target / 'a').read_text() == 'mine'
  assert os.listdir(tmp_path) == ['extracted']


@pytest.mark.parametrize('remote', [False, True])
def test_reads_take_local_and_remote_paths(tmp_path, remote):
  folder = (f'ram://reads-{uuid.uuid4().hex}' if remote
            else str(tmp_path / 'reads'))
  path = f'{folder}/manifest.json'
  assert not files.exists(path) and not files.isdir(folder)
  tf.io.gfile.makedirs(folder)
  files.write_atomically(path, 'täxt')
  assert files.exists(path) and files.isdir(folder)
  assert not files.isdir(path)
  assert files.read_text(path) == 'täxt'
  assert files.size(path) == len('täxt'.encode('utf-8'))


def test_json_text_is_stable():
  assert files.json_text({'b': [1, (2, 3)], 'a': 'é'}) == (
      '{\n "a": "é",\n "b": [\n  1,\n  [\n   2,\n   3\n  ]\n ]\n}\n')
