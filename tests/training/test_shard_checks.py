"""Shards and labels are checked against the manifest.

Before the run writes anything, `build_inputs` refuses a manifest whose
shards are missing, of another size than recorded, or hold label indices
outside its labels; while reading, a corrupted or truncated record or a
label outside the manifest's stops the pipeline with one line naming the
shard (what `movinet-train` prints, see `trainer.main.one_line`).
"""

import json
import logging
import shutil

import pytest
import tensorflow as tf

from trainer import main as main_lib
from trainer.data import schema
from trainer.data.sampling import Sampling
from trainer.training import inputs as inputs_lib
from trainer.training.cluster import Cluster
from trainer.training.config import InputsConfig

_CLUSTER = Cluster(tf.distribute.OneDeviceStrategy('/cpu:0'))


@pytest.fixture
def prepared(data_dir, tmp_path):
  """A copy of the tiny prepared dataset that a test may damage."""
  target = tmp_path / 'data'
  shutil.copytree(data_dir, target,
                  ignore=shutil.ignore_patterns('source_videos'))
  return target


def _manifest(folder):
  return json.loads((folder / schema.MANIFEST_NAME).read_text())


def _write_manifest(folder, manifest):
  (folder / schema.MANIFEST_NAME).write_text(json.dumps(manifest))


def _shard(folder, split):
  return folder / _manifest(folder)['splits'][split]['shards'][0]['file']


def _without(folder, *keys):
  """Rewrites the manifest as an older version wrote it: without `keys`."""
  manifest = _manifest(folder)
  for entry in manifest['splits'].values():
    for shard in entry['shards']:
      for key in keys:
        del shard[key]
  _write_manifest(folder, manifest)


def _drop_last_label(folder):
  manifest = _manifest(folder)
  manifest['labels'] = manifest['labels'][:-1]
  _write_manifest(folder, manifest)


def _inputs(folder) -> inputs_lib.VideoInputs:
  """The inputs of a tiny run on `folder`, read and checked as a run does."""
  return inputs_lib.VideoInputs.read(
      InputsConfig(str(folder), batch_size=4, sampling=Sampling(
          num_frames=4, frame_step=2, image_size=32)), _CLUSTER)


def _read_all(folder, training):
  """Iterates one pass of a split, as training or evaluation reads it."""
  inputs = _inputs(folder)
  dataset = (inputs.train_dataset(_CLUSTER.strategy, seed=1, epoch=0,
                                  deterministic=False)
             if training else inputs.eval_dataset())
  return sum(int(labels.shape[0]) for _, labels in dataset)


def _check_line(line, shard, *phrases):
  assert '\n' not in line, line
  for phrase in (str(shard), 'movinet-prepare', 'new --output_dir',
                 *phrases):
    assert phrase in line, line


def test_labels_outside_the_manifest_are_refused_before_reading(prepared):
  _drop_last_label(prepared)
  with pytest.raises(ValueError) as error:
    _inputs(prepared)
  first_split = next(iter(_manifest(prepared)['splits']))
  _check_line(main_lib.one_line(error.value), _shard(prepared, first_split),
              'label indices [3]', 'outside the 3 labels')


@pytest.mark.parametrize('damage', ['test_shard_copied_over', 'truncated'])
def test_a_shard_of_another_size_is_refused_before_reading(prepared, damage):
  train = _shard(prepared, 'train')
  size = train.stat().st_size
  if damage == 'truncated':
    train.write_bytes(train.read_bytes()[:size // 2])
  else:
    shutil.copyfile(_shard(prepared, 'test'), train)
  with pytest.raises(ValueError) as error:
    _inputs(prepared)
  _check_line(main_lib.one_line(error.value), train,
              f'records {size}', f'has {train.stat().st_size} bytes')


def test_a_missing_shard_is_refused_before_reading(prepared):
  train = _shard(prepared, 'train')
  train.unlink()
  with pytest.raises(ValueError) as error:
    _inputs(prepared)
  _check_line(main_lib.one_line(error.value), train, 'is missing')


@pytest.mark.parametrize('training', [True, False])
def test_a_flipped_byte_stops_reading_naming_the_shard(prepared, training):
  shard = _shard(prepared, 'train' if training else 'test')
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF
  shard.write_bytes(bytes(data))
  _inputs(prepared)  # same size
  with pytest.raises(tf.errors.OpError) as error:
    _read_all(prepared, training)
  _check_line(main_lib.one_line(error.value), shard, 'corrupted, truncated')


def test_an_older_manifest_warns_once_and_reading_names_the_shard(
    prepared, caplog):
  _without(prepared, 'size')
  train = _shard(prepared, 'train')
  train.write_bytes(train.read_bytes()[:train.stat().st_size // 2])
  with caplog.at_level(logging.WARNING):
    _inputs(prepared)
  warnings = [r for r in caplog.records if 'records no size' in r.message]
  assert len(warnings) == 1, caplog.text
  assert 'not checked' in warnings[0].message
  with pytest.raises(tf.errors.OpError) as error:
    _read_all(prepared, training=True)
  _check_line(main_lib.one_line(error.value), train, 'does not hold the 32')


@pytest.mark.parametrize('training', [True, False])
def test_a_label_outside_an_older_manifest_stops_reading(prepared, training):
  _without(prepared, 'size', 'label_indices')
  _drop_last_label(prepared)
  _inputs(prepared)
  with pytest.raises(tf.errors.OpError) as error:
    _read_all(prepared, training)
  shard = _shard(prepared, 'train' if training else 'test')
  _check_line(main_lib.one_line(error.value), shard, 'label index 3',
              'outside the 3 labels')

