"""Which records of which shards each input pipeline reads."""

import numpy as np
import pytest

from trainer.data import shard_reader


def test_shards_are_dealt_out_whole_and_the_rest_shared():
  # 3 files of 64 clips on 2 workers (the quickstart's training split).
  assert shard_reader.assign_shards([64, 64, 64], 2) == [
      [(0, 1, 0), (2, 2, 0)], [(1, 1, 0), (2, 2, 1)]]
  # 5 files on 4 workers as `--shard_clips=64` writes 264 clips.
  slices = shard_reader.assign_shards([64, 64, 64, 64, 8], 4)
  assert slices == [[(pipeline, 1, 0), (4, 4, pipeline)]
                    for pipeline in range(4)]
  # 5 files as `--num_shards=5` writes 21 clips: one clip apart is even.
  assert shard_reader.assign_shards([4, 4, 4, 4, 5], 4) == [
      [(4, 1, 0), (3, 4, 0)], [(0, 1, 0), (3, 4, 1)],
      [(1, 1, 0), (3, 4, 2)], [(2, 1, 0), (3, 4, 3)]]
  # Shared shards count as one sequence: 3 files of 2, 1 and 2 records on 4.
  assert shard_reader.assign_shards([2, 1, 2], 4) == [
      [(0, 4, 0), (1, 4, 0)], [(0, 4, 1)], [(2, 4, 0)], [(2, 4, 1)]]


@pytest.mark.parametrize('seed', range(20))
def test_every_record_goes_to_one_pipeline(seed):
  rng = np.random.default_rng(seed)
  num_pipelines = int(rng.choice([2, 3, 4, 8]))
  full, last = int(rng.integers(1, 200)), int(rng.integers(1, 200))
  clips = [full] * int(rng.integers(0, 20)) + [min(last, full)]
  if seed % 2:  # shards of any size, e.g. of a folder with skipped videos
    clips = rng.integers(1, 100, size=rng.integers(1, 30)).tolist()
  slices = shard_reader.assign_shards(clips, num_pipelines)
  owners = [[] for _ in clips]
  for pipeline_id, parts in enumerate(slices):
    for shard, stride, offset in parts:
      for record in range(offset, clips[shard], stride):
        owners[shard].append((record, pipeline_id))
  for shard, records in enumerate(owners):
    assert sorted(r for r, _ in records) == list(range(clips[shard])), shard
  loads = [sum(shard_reader.slice_size(clips[s], n, o) for s, n, o in parts)
           for parts in slices]
  if seed % 2 == 0:  # as prepared: at most the last round is shared
    assert max(loads) - min(loads) <= max(1, clips[0] - clips[-1]), clips
