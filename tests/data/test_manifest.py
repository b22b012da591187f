"""`Manifest`: read, checked, written back byte for byte."""

import copy
import json
import logging
import os

import pytest

from tests.data.clips import write_prepared
from trainer.data import prepare as prepare_lib
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data.manifest import Manifest
from trainer.data.manifest import Shard
from trainer.data.manifest import Split
from trainer.data.manifest import Video

_TINY = dict(source='synthetic', workers=1, num_classes=2,
             splits='train:2,test:1', shard_clips=1, synthetic_size=(32, 40),
             synthetic_frames=8)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """The folder of a tiny synthetic preparation, and its manifest's text."""
  out = tmp_path_factory.mktemp('prepared')
  prepare_lib.prepare(str(out), **_TINY)
  return str(out), (out / schema.MANIFEST_NAME).read_bytes()


def test_a_prepared_manifest_round_trips_byte_for_byte(prepared, tmp_path):
  data_dir, text = prepared
  manifest = Manifest.read(data_dir)
  assert manifest.data_dir == data_dir
  assert manifest.labels == ('moving_left', 'moving_right')
  assert manifest.num_classes == 2
  assert manifest.frames.jpeg_quality == 90 and manifest.source.kind == (
      'synthetic')
  train = manifest.split('train')
  assert train.num_clips == 4 and len(train.shards) == 4
  assert all(isinstance(s, Shard) and s.size and s.label_indices
             for s in train.shards)
  written = manifest.write(str(tmp_path))
  assert (tmp_path / schema.MANIFEST_NAME).read_bytes() == text
  assert written.data_dir == str(tmp_path)
  assert Manifest.read(str(tmp_path)) == manifest  # equal wherever it is
  # Each video written, with its shard, decoder, records and frames.
  assert len(manifest.videos) == 6
  assert all(isinstance(v, Video) and v.decoder == 'opencv'
             and v.segments == 1 and v.frames == 8 for v in manifest.videos)
  assert [v.video for v in manifest.videos] == sorted(
      v.video for v in manifest.videos)
  assert {v.shard for v in manifest.videos} == {
      s.file for split in manifest.splits.values() for s in split.shards}
  assert manifest.frames.max_seconds == prepare_settings.DEFAULT_MAX_SECONDS


def _as_format_2(entry):
  """A manifest entry as format 2 wrote it: no videos, no max_seconds."""
  entry = copy.deepcopy(entry)
  del entry['videos'], entry['frames']['max_seconds']
  del entry['settings']['max_seconds']
  entry['settings']['format'] = entry['format'] = 'movinet-prepare/2'
  return entry


def test_an_older_manifest_reads_and_its_folder_is_refused(prepared,
                                                           tmp_path):
  _, text = prepared
  old = _as_format_2(json.loads(text))
  (tmp_path / schema.MANIFEST_NAME).write_text(json.dumps(old))
  manifest = Manifest.read(str(tmp_path))
  assert (manifest.videos, manifest.frames.max_seconds) == ((), None)
  assert manifest.format == 'movinet-prepare/2'
  # Its records lack video/segment: no resuming it in the new format.
  with pytest.raises(prepare_lib.PrepareError,
                     match=r'differing: format, max_seconds\)'):
    prepare_lib.prepare(str(tmp_path), **_TINY)


def test_a_minimal_manifest_reads_with_what_it_lacks_unset(tmp_path):
  # As test shards and older versions write it: no sizes, label indices,
  # format, source or settings.
  manifest = Manifest.read(write_prepared(tmp_path, [[3, 3], [3]]))
  shard = manifest.splits['train'].shards[0]
  assert (shard.size, shard.label_indices) == (None, None)
  assert (manifest.format, manifest.source, manifest.settings) == (
      None, None, None)
  assert manifest.frames.min_frames is None
  assert 'size' not in manifest.to_json()['splits']['train']['shards'][0]


def test_the_fingerprint_counts_files_clips_and_sha256_only():
  shards = (Shard('train-00000-of-00002.tfrecord', 2, 'ab', 10, (0, 1)),
            Shard('train-00001-of-00002.tfrecord', 1, 'cd'))
  manifest = Manifest(labels=('b', 'a'), splits={'train': Split(3, shards)})
  # The value runs recorded before the manifest was typed (run.json).
  assert manifest.fingerprint('train') == 'ed85f1f1b2659e32'
  unsized = Manifest(labels=('b', 'a'), splits={'train': Split(3, tuple(
      Shard(s.file, s.num_clips, s.sha256) for s in shards))})
  assert unsized.fingerprint('train') == manifest.fingerprint('train')
  relabelled = Manifest(labels=('a', 'b'), splits=manifest.splits)
  assert relabelled.fingerprint('train') != manifest.fingerprint('train')


def _set(entry, path, value):
  for key in path[:-1]:
    entry = entry[key]
  if value is _DELETE:
    del entry[path[-1]]
  else:
    entry[path[-1]] = value


_DELETE = object()
_SHARD = ('splits', 'train', 'shards', 0)


@pytest.mark.parametrize('path, value, problem', [
    (('labels',), 'abc', "has labels='abc'; they must be a non-empty list"),
    (('labels',), ['a', 'a'], 'a non-empty list of distinct names'),
    (('splits',), _DELETE, "lacks the key 'splits'"),
    (('splits',), [], "has splits=[]; it must be an object"),
    (_SHARD + ('num_clips',), '3',
     "lists a shard of split 'train' without file or num_clips"),
    (_SHARD + ('size',), 'big',
     "has splits['train']['shards'][0]['size']='big'; it must be an int"),
    (_SHARD + ('label_indices',), [0, 'x'],
     "has splits['train']['shards'][0]['label_indices'][1]='x'; it must be "
     'an int'),
    (('splits', 'train', 'num_clips'), None,
     "has splits['train']['num_clips']=None; it must be an int"),
    (('frames', 'jpeg_quality'), _DELETE,
     "has frames['jpeg_quality']=None; it must be an int"),
    (('skipped',), [{'video': 'a.avi'}],
     "has skipped[0]['reason']=None; it must be a string"),
    (('videos', 0, 'segments'), '2',
     "has videos[0]['segments']='2'; it must be an int"),
    (('videos', 1, 'decoder'), _DELETE,
     "has videos[1]['decoder']=None; it must be a string"),
])
def test_a_malformed_manifest_names_the_part_and_the_fix(prepared, tmp_path,
                                                         path, value, problem):
  _, text = prepared
  entry = json.loads(text)
  _set(entry, path, value)
  (tmp_path / schema.MANIFEST_NAME).write_text(json.dumps(entry))
  with pytest.raises(ValueError) as error:
    Manifest.read(str(tmp_path))
  message = str(error.value)
  assert problem in message, message
  assert str(tmp_path / schema.MANIFEST_NAME) in message and '\n' not in message
  assert f'movinet-prepare --output_dir={tmp_path}' in message


@pytest.mark.parametrize('name, problem', [
    ('validation', "build_inputs.eval_split='validation' is not a split of "
     "{}; it has ['test', 'train']."),
    ('test', "Split 'test' of {} has no clips; prepare it again with more "
     'videos, or bind build_inputs.eval_split to another split.'),
])
def test_a_missing_or_empty_split_names_the_setting(prepared, name, problem):
  data_dir, _ = prepared
  manifest = Manifest.read(data_dir)
  emptied = copy.deepcopy(manifest.to_json())
  emptied['splits']['test'] = {'num_clips': 0, 'shards': []}
  emptied = Manifest.from_json(emptied, data_dir)
  with pytest.raises(ValueError) as error:
    emptied.split(name, what='build_inputs.eval_split')
  assert str(error.value) == problem.format(data_dir)


def _damage(data_dir, damage):
  """Removes or truncates the first test shard of `data_dir`."""
  manifest = Manifest.read(data_dir)
  shard = manifest.splits['test'].shards[0]
  path = manifest.shard_path(shard)
  if damage == 'missing':
    os.remove(path)
  elif damage == 'truncated':
    with open(path, 'r+b') as f:
      f.truncate(shard.size - 1)
  return path


@pytest.mark.parametrize('damage, problem', [
    ('missing', 'is missing'), ('truncated', 'bytes, but'),
    ('labels', 'holds label indices [1], outside the 1 labels')])
def test_check_files_names_the_shard_and_the_fix(tmp_path, damage, problem):
  data_dir = str(tmp_path / 'data')
  prepare_lib.prepare(data_dir, **{**_TINY, 'splits': 'train:1,test:1'})
  path = _damage(data_dir, damage)
  manifest = Manifest.read(data_dir)
  if damage == 'labels':
    manifest = Manifest(labels=manifest.labels[:1], splits=manifest.splits,
                        data_dir=data_dir)
    path = next(manifest.shard_path(s) for split in manifest.splits.values()
                for s in split.shards if 1 in s.label_indices)
  with pytest.raises(ValueError) as error:
    manifest.check_files()
  message = str(error.value)
  assert message.startswith(f'Shard {path} ') and problem in message
  assert 'new --output_dir' in message


def test_unsized_shards_warn_once(tmp_path, caplog):
  manifest = Manifest.read(write_prepared(tmp_path, [[3], [3]]))
  with caplog.at_level(logging.WARNING):
    manifest.check_files()
  warnings = [r.getMessage() for r in caplog.records
              if 'records no size for 2 shard(s)' in r.getMessage()]
  assert len(warnings) == 1
