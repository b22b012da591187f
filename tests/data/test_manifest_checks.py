"""What the manifest records of each shard, and `movinet-prepare --verify`."""

import dataclasses
import hashlib
import json
import shutil

import pytest
import tensorflow as tf

from trainer import prepare_main
from trainer.data import prepare as prepare_lib
from trainer.data import schema
from trainer.data.manifest import Shard


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """A small synthetic dataset of several shards per split."""
  out = tmp_path_factory.mktemp('prepared')
  prepare_lib.prepare(str(out), source='synthetic', workers=1, num_classes=3,
                      splits='train:2,test:1', shard_clips=2,
                      synthetic_size=(32, 40), synthetic_frames=8)
  return out


@pytest.fixture
def copy(prepared, tmp_path):
  """A copy of `prepared` that a test may damage."""
  target = tmp_path / 'copy'
  shutil.copytree(prepared, target,
                  ignore=shutil.ignore_patterns('source_videos'))
  return target


def _shards(folder):
  manifest = json.loads((folder / schema.MANIFEST_NAME).read_text())
  return [s for entry in manifest['splits'].values() for s in entry['shards']]


def test_each_shard_s_size_sha256_and_label_indices_are_recorded(prepared):
  shards = _shards(prepared)
  assert len(shards) > 2
  for shard in shards:
    path = prepared / shard['file']
    assert sorted(shard) == sorted(f.name for f in dataclasses.fields(Shard))
    assert shard['size'] == path.stat().st_size
    assert shard['sha256'] == hashlib.sha256(path.read_bytes()).hexdigest()
    labels = {int(schema.parse_clip(r).label)
              for r in tf.data.TFRecordDataset(str(path))}
    assert labels and shard['label_indices'] == sorted(labels)


def test_verify_accepts_intact_shards(prepared):
  assert not prepare_lib.verify(str(prepared))
  prepare_main._verify_main(str(prepared))  # returns: exit status 0


@pytest.mark.parametrize('damage, problem', [
    ('flipped', 'sha256 differs'),
    ('truncated', 'bytes, the manifest records'),
    ('missing', 'missing'),
])
def test_verify_names_the_bad_shards(copy, damage, problem):
  bad = [copy / s['file'] for s in _shards(copy)[1::2]]
  for path in bad:
    data = bytearray(path.read_bytes())
    if damage == 'flipped':
      data[len(data) // 2] ^= 0x01
      path.write_bytes(bytes(data))
    elif damage == 'truncated':
      path.write_bytes(bytes(data[:-1]))
    else:
      path.unlink()
  problems = prepare_lib.verify(str(copy))
  assert len(problems) == len(bad)
  for path, found in zip(bad, problems):
    assert found.startswith(f'{path.name} (') and problem in found, found
  with pytest.raises(SystemExit) as exit_:
    prepare_main._verify_main(str(copy))
  message = str(exit_.value.code)
  assert message.startswith('movinet-prepare: error: ') and '\n' not in message
  assert all(p.name in message for p in bad)
  assert 'new --output_dir' in message
  good = [s['file'] for s in _shards(copy)[0::2]]
  assert not any(name in message for name in good)


def test_verify_without_a_manifest(tmp_path):
  with pytest.raises(SystemExit) as exit_:
    prepare_main._verify_main(str(tmp_path))
  message = str(exit_.value.code)
  assert str(tmp_path) in message and schema.MANIFEST_NAME in message
