"""`PrepareSettings` fills the per-source defaults and names a bad flag."""

import os
import pickle

import pytest

from trainer.data import prepare_settings
from trainer.data import shard_worker
from trainer.data.prepare_settings import PrepareError
from trainer.data.prepare_settings import PrepareSettings


def test_per_source_defaults_are_filled(tmp_path, monkeypatch):
  monkeypatch.setattr(os, 'cpu_count', lambda: 3)
  synthetic = PrepareSettings(str(tmp_path / 'out'), fps=0)
  assert (synthetic.num_classes, synthetic.splits, synthetic.short_side,
          synthetic.workers, synthetic.fps) == (4, 'train:48,test:16', 256,
                                                3, None)
  assert synthetic.synthetic_dir == str(tmp_path / 'out' / 'source_videos')
  assert (synthetic.video_dir, synthetic.ucf101_url) == (None, None)
  folder = PrepareSettings(str(tmp_path / 'out'), source='folder',
                           video_dir='videos', synthetic_size=['8', '9'],
                           fps=25)
  assert folder.video_dir == os.path.abspath('videos')
  assert (folder.num_classes, folder.splits, folder.fps) == (
      None, 'train:30,test:20', 25.0)
  assert (folder.synthetic_frames, folder.synthetic_size,
          folder.synthetic_fps) == (None, None, None)
  assert PrepareSettings(**vars(folder)) == folder  # filled once for all


def test_recorded_settings_are_those_that_change_output_bytes(tmp_path):
  settings = PrepareSettings(str(tmp_path), workers=2, overwrite=True)
  recorded = settings.recorded()
  assert recorded['format'] == prepare_settings.FORMAT
  assert recorded['synthetic_size'] == [120, 160]  # as JSON reads it back
  assert not {'workers', 'output_dir', 'synthetic_dir', 'overwrite'} & set(
      recorded)
  # Splitting long videos changes the records: max_seconds counts.
  assert recorded['max_seconds'] == prepare_settings.DEFAULT_MAX_SECONDS
  assert PrepareSettings(str(tmp_path), max_seconds=0).recorded()[
      'max_seconds'] == 0.0
  assert settings.recorded() == PrepareSettings(str(tmp_path)).recorded()


@pytest.mark.parametrize('flags, message', [
    (dict(source='youtube'),
     "PrepareSettings.source='youtube' is not one of synthetic, folder, "
     'ucf101 (flag --source).'),
    (dict(jpeg_quality=101),
     'PrepareSettings.jpeg_quality=101 must be at most 100 (flag '
     '--jpeg_quality).'),
    (dict(shard_clips='4'),
     "PrepareSettings.shard_clips='4' must be an int (flag --shard_clips)."),
    (dict(num_shards=0),
     'PrepareSettings.num_shards=0 must be at least 1 (flag --num_shards).'),
    (dict(fps=-1), 'PrepareSettings.fps=-1.0 must be a positive rate'),
    (dict(max_seconds=-1), 'PrepareSettings.max_seconds=-1.0 must be a '
     'positive number of seconds, or 0 for no limit'),
    (dict(max_seconds='60'),
     "PrepareSettings.max_seconds='60' must be a float or None"),
    (dict(num_classes=7), 'PrepareSettings.num_classes=7 is not allowed for '
     'the synthetic source; pass 2..6 (flag --num_classes).'),
    (dict(split_by='group'), 'needs UCF101 names'),
    (dict(source='folder'), 'PrepareSettings.video_dir=None is needed by '
     'source=folder'),
])
def test_a_bad_flag_is_named(tmp_path, flags, message):
  with pytest.raises(PrepareError) as error:
    PrepareSettings(str(tmp_path), **flags)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_an_empty_output_dir_is_refused():
  with pytest.raises(PrepareError, match='output_dir.* is empty'):
    PrepareSettings('')


def test_a_shard_job_and_its_result_cross_to_a_worker_process(tmp_path):
  job = shard_worker.ShardJob(
      file='train-00000-of-00001.tfrecord', output_dir=str(tmp_path),
      token='1-00ff', source='folder', root=str(tmp_path),
      videos=(('a/v.avi', 'a', 0),), fps=None, short_side=256, min_frames=8,
      jpeg_quality=90, max_seconds=60.0)
  assert pickle.loads(pickle.dumps(job)) == job
  result = shard_worker.ShardResult(
      file=job.file, num_clips=1, num_frames=8, num_videos=2, sha256='ab',
      size=10, label_indices=(0,), skipped=(('a/w.avi', 'empty file'),),
      videos=(('a/v.avi', 'pyav', 2, 8),))
  assert pickle.loads(pickle.dumps(result)) == result
  assert shard_worker.ShardResult.from_json(result.to_json()) == result
