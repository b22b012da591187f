"""What `movinet-prepare` will write, decided before anything is written.

`make_plan` lists the source, picks the classes, splits the videos and cuts
each split into shards of `shard_clips` videos (shard i holds videos
[i*k, (i+1)*k) of the split, after a seeded shuffle so every shard mixes
classes): one `shard_worker.ShardJob` per shard. Videos are split before
any is decoded, so that the segments a long video becomes later all land
in its shard, and so in one split. Every check that can fail
on the source fails here, before a file is written.
"""

import dataclasses
import os
from typing import Mapping

import numpy as np

from trainer.data import schema
from trainer.data import sources
from trainer.data import splits as splits_lib
from trainer.data import synthetic
from trainer.data.prepare_settings import PrepareError
from trainer.data.prepare_settings import PrepareSettings
from trainer.data.shard_worker import ShardJob


@dataclasses.dataclass(frozen=True)
class Plan:
  """The shards of a preparation.

  Attributes:
    labels: the class names, sorted; a video's label index points into them.
    jobs: one job per shard, split after split.
    layout: each split's shard file names, in order.
    listing_skipped: `(name, reason)` of what the source's listing left out.
  """
  labels: tuple[str, ...]
  jobs: tuple[ShardJob, ...]
  layout: Mapping[str, tuple[str, ...]]
  listing_skipped: tuple[tuple[str, str], ...]


def make_plan(settings: PrepareSettings, token: str) -> Plan:
  """Lists, selects, splits and cuts shards; writes nothing.

  Args:
    settings: the run's settings.
    token: the run's token (`shard_worker.new_token`), given to every job.

  Raises:
    PrepareError: the source cannot be listed, or its videos cannot be
      split as the settings say; the message names the flag.
  """
  try:
    listing, root = _list_source(settings)
    classes = splits_lib.select_classes(
        [e.label for e in listing.entries], settings.num_classes)
    entries = splits_lib.filter_classes(listing.entries, classes)
    if settings.split_by == 'group':
      by_split = splits_lib.split_by_group(entries, settings.fold)
    else:
      by_split = splits_lib.split_by_counts(
          entries, splits_lib.parse_splits(settings.splits), settings.seed)
  except sources.RemoteArchiveError as e:
    raise PrepareError(str(e)) from e
  except ValueError as e:
    message = str(e)
    if settings.source == 'folder' and '--' not in message:
      message += ' (flag --video_dir)'
    raise PrepareError(message) from e
  for split, videos in by_split.items():
    if not videos:
      raise PrepareError(f'split {split!r} gets no videos; check --splits, '
                         '--split_by and --fold.')
  label_index = {label: i for i, label in enumerate(classes)}
  jobs, layout = [], {}
  for split, videos in by_split.items():
    videos = list(videos)
    np.random.default_rng([settings.seed, 7]).shuffle(videos)
    bounds = _shard_bounds(len(videos), settings.shard_clips,
                           settings.num_shards)
    layout[split] = tuple(schema.shard_name(split, index, len(bounds))
                          for index in range(len(bounds)))
    jobs += [ShardJob(
        file=name, output_dir=settings.output_dir, token=token,
        source=settings.source, root=root,
        videos=tuple((e.name, e.label, label_index[e.label])
                     for e in videos[start:stop]),
        fps=settings.fps, short_side=settings.short_side or None,
        min_frames=settings.min_frames, jpeg_quality=settings.jpeg_quality,
        max_seconds=settings.max_seconds or None)
             for name, (start, stop) in zip(layout[split], bounds)]
  return Plan(labels=tuple(classes), jobs=tuple(jobs), layout=layout,
              listing_skipped=tuple(listing.skipped))


def _list_source(settings: PrepareSettings) -> tuple[sources.Listing, str]:
  """`(Listing, root)`; root is the folder or URL videos are read from."""
  if settings.source == 'ucf101':
    return sources.list_ucf101(settings.ucf101_url), settings.ucf101_url
  if settings.source == 'folder':
    return sources.list_folder(settings.video_dir), settings.video_dir
  # Synthetic: the listing is known before generating; generated later.
  counts = splits_lib.parse_splits(settings.splits)
  entries = [sources.VideoEntry(f'{c}/{c}_{i:04d}.avi', c)
             for c in synthetic.CLASS_NAMES[:settings.num_classes]
             for i in range(sum(counts.values()))]
  return sources.Listing(sorted(entries, key=sources.entry_sort_key)), (
      synthetic_root(settings))


def synthetic_root(settings: PrepareSettings) -> str:
  """The folder of the synthetic videos these settings generate."""
  height, width = settings.synthetic_size
  return os.path.join(
      settings.synthetic_dir,
      f'f{settings.synthetic_frames}-{height}x{width}-'
      f'fps{settings.synthetic_fps:g}-seed{settings.seed}')


def generate_synthetic(settings: PrepareSettings, plan: Plan) -> None:
  """Generates the plan's synthetic videos, unless they all exist."""
  root = synthetic_root(settings)
  names = [video[0] for job in plan.jobs for video in job.videos]
  if all(os.path.exists(os.path.join(root, n)) for n in names):
    return
  synthetic.generate_videos(
      root, num_classes=len(plan.labels),
      videos_per_class=sum(splits_lib.parse_splits(settings.splits).values()),
      num_frames=settings.synthetic_frames, size=settings.synthetic_size,
      fps=settings.synthetic_fps, seed=settings.seed)


def _shard_bounds(count, shard_clips, num_shards):
  """`[(start, stop)]` per shard: fixed `shard_clips`, or `num_shards` even."""
  if num_shards is None:
    return [(i, min(i + shard_clips, count))
            for i in range(0, count, shard_clips)]
  num_shards = min(num_shards, count)
  return [(i * count // num_shards, (i + 1) * count // num_shards)
          for i in range(num_shards)]
