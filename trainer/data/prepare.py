"""`movinet-prepare`: videos -> TFRecord shards + `manifest.json`.

  movinet-prepare --output_dir=/data/synthetic                  # 4 classes
  movinet-prepare --source=folder --video_dir=/videos --output_dir=/data/mine
  movinet-prepare --source=ucf101 --num_classes=10 --split_by=group \\
      --output_dir=/data/ucf101_10

List the source, pick classes, split, then cut each split into shards of
`shard_clips` videos (shard i holds videos [i*k, (i+1)*k) of the split, after a
seeded shuffle so every shard mixes classes). Each shard is one job of a
`spawn` process pool; a worker (`shard_worker`) decodes its videos with
OpenCV, downscaling any whose short side exceeds `short_side` (smaller ones
keep their size), JPEG-encodes the frames and writes the shard with the
pure-Python `tfrecord_writer`. A shard is written as `<shard>.tmp-<pid>`,
fsynced and renamed; then `.prepare/<shard>.json` records its clip count,
sha256 and skipped videos. Settings and their checks live in
`prepare_settings`.

Rerunning the same command resumes: shards whose record matches their sha256
are kept, the rest are redone, and the result is byte-identical to an
uninterrupted run. Different settings in the same `output_dir` are refused.
"""

import collections
import json
import multiprocessing
import os
import shutil
import sys

from absl import flags
from absl import logging
import numpy as np
import tqdm

# Nothing here imports TensorFlow: `spawn` workers re-import this module.
from trainer import command_line
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data import sources
from trainer.data import splits as splits_lib
from trainer.data import synthetic
from trainer.data.prepare_settings import (PrepareError, SYNTHETIC_FPS,
                                           SYNTHETIC_FRAMES, SYNTHETIC_SIZE)
from trainer.data.shard_worker import STATE_DIR, TMP_MARK


# Every argument reaches `check_settings` through `locals()`.
def prepare(  # pylint: disable=unused-argument
    output_dir: str, source: str = 'synthetic', video_dir: str | None = None,
    ucf101_url: str = sources.DEFAULT_UCF101_URL,
    num_classes: int | None = None, splits: str | None = None,
    split_by: str = 'count', fold: int = 1, seed: int = 0,
    fps: float | None = None, short_side: int | None = None,
    jpeg_quality: int = 90, shard_clips: int = 64,
    num_shards: int | None = None, workers: int | None = None,
    min_frames: int = 8, synthetic_dir: str | None = None,
    synthetic_frames: int = SYNTHETIC_FRAMES,
    synthetic_size: tuple[int, int] = SYNTHETIC_SIZE,
    synthetic_fps: float = SYNTHETIC_FPS) -> dict:
  """Prepares a dataset; see the module docstring and the flags in `run`.

  Args: as the flags of the same names; None picks the per-source default
    (`splits`: DEFAULT_SPLITS; `short_side`: DEFAULT_SHORT_SIDE, the largest
    short side in px, never upscaling, 0 keeps every size; `num_classes`:
    4 synthetic, else all; `fps`: source rate; `workers`: os.cpu_count();
    `synthetic_dir`: `output_dir/source_videos`).

  With `workers > 1` shards run in a `spawn` pool, which re-imports the
  caller's main module: a calling script needs `if __name__ == '__main__':`.

  Returns:
    The manifest, as written to `output_dir/manifest.json`.

  Raises:
    PrepareError: bad settings, a source that cannot be listed or split, or
      an `output_dir` prepared with other settings; nothing is written.
    sources.RemoteArchiveError: the UCF101 zip failed during fetching.
  """
  settings = prepare_settings.check_settings(**locals())
  plan = _plan(settings)  # every up-front check; writes nothing
  state_dir = os.path.join(output_dir, STATE_DIR)
  os.makedirs(state_dir, exist_ok=True)
  _remove_stale(output_dir)
  shard_worker.write_atomically(
      os.path.join(state_dir, prepare_settings.SETTINGS_NAME),
      shard_worker.dumps(prepare_settings.output_settings(settings)))
  if settings['source'] == 'synthetic':
    _generate_synthetic(settings, plan)
  results = _run_jobs(plan['jobs'], settings['workers'], output_dir)
  manifest = _manifest(settings, plan, results)
  shard_worker.write_atomically(os.path.join(output_dir, schema.MANIFEST_NAME),
                               shard_worker.dumps(manifest))
  _log_summary(manifest)
  return manifest


# -------------------------------------------------------------------- plan


def _plan(settings: dict) -> dict:
  """Lists, selects, splits and cuts shards; raises PrepareError early."""
  prepare_settings.check_previous(settings)
  try:
    listing, root = _list_source(settings)
    classes = splits_lib.select_classes(
        [e.label for e in listing.entries], settings['num_classes'])
    entries = splits_lib.filter_classes(listing.entries, classes)
    if settings['split_by'] == 'group':
      by_split = splits_lib.split_by_group(entries, settings['fold'])
    else:
      by_split = splits_lib.split_by_counts(
          entries, splits_lib.parse_splits(settings['splits']),
          settings['seed'])
  except sources.RemoteArchiveError as e:
    raise PrepareError(str(e)) from e
  except ValueError as e:
    message = str(e)
    if settings['source'] == 'folder' and '--' not in message:
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
    np.random.default_rng([settings['seed'], 7]).shuffle(videos)
    bounds = _shard_bounds(len(videos), settings['shard_clips'],
                           settings['num_shards'])
    layout[split] = []
    for index, (start, stop) in enumerate(bounds):
      name = schema.shard_name(split, index, len(bounds))
      layout[split].append(name)
      jobs.append({
          'file': name, 'output_dir': settings['output_dir'],
          'source': settings['source'], 'root': root,
          'url': settings['ucf101_url'],
          'videos': [(e.name, e.label, label_index[e.label])
                     for e in videos[start:stop]],
          'fps': settings['fps'], 'short_side': settings['short_side'] or None,
          'min_frames': settings['min_frames'],
          'jpeg_quality': settings['jpeg_quality']})
  return {'labels': classes, 'jobs': jobs, 'layout': layout,
          'listing_skipped': listing.skipped}


def _list_source(settings):
  """`(Listing, root)`; root is the folder or URL videos are read from."""
  source = settings['source']
  if source == 'ucf101':
    return sources.list_ucf101(settings['ucf101_url']), settings['ucf101_url']
  if source == 'folder':
    return sources.list_folder(settings['video_dir']), settings['video_dir']
  # Synthetic: the listing is known before generating; generated later.
  counts = splits_lib.parse_splits(settings['splits'])
  num = settings['num_classes']
  if not isinstance(num, int) or not 2 <= num <= len(synthetic.CLASS_NAMES):
    raise PrepareError(f'num_classes={num!r} is not allowed for the synthetic'
                       f' source; pass 2..{len(synthetic.CLASS_NAMES)} (flag '
                       '--num_classes).')
  entries = [sources.VideoEntry(f'{c}/{c}_{i:04d}.avi', c)
             for c in synthetic.CLASS_NAMES[:num]
             for i in range(sum(counts.values()))]
  return sources.Listing(sorted(entries, key=sources.entry_sort_key)), (
      _synthetic_root(settings))


def _synthetic_root(settings) -> str:
  height, width = settings['synthetic_size']
  return os.path.join(
      settings['synthetic_dir'],
      f'f{settings["synthetic_frames"]}-{height}x{width}-'
      f'fps{settings["synthetic_fps"]:g}-seed{settings["seed"]}')


def _generate_synthetic(settings, plan):
  root = _synthetic_root(settings)
  names = [v[0] for job in plan['jobs'] for v in job['videos']]
  if all(os.path.exists(os.path.join(root, n)) for n in names):
    return
  synthetic.generate_videos(
      root, num_classes=len(plan['labels']),
      videos_per_class=sum(splits_lib.parse_splits(
          settings['splits']).values()),
      num_frames=settings['synthetic_frames'],
      size=settings['synthetic_size'], fps=settings['synthetic_fps'],
      seed=settings['seed'])


def _shard_bounds(count, shard_clips, num_shards):
  """`[(start, stop)]` per shard: fixed `shard_clips`, or `num_shards` even."""
  if num_shards is None:
    return [(i, min(i + shard_clips, count))
            for i in range(0, count, shard_clips)]
  num_shards = min(num_shards, count)
  return [(i * count // num_shards, (i + 1) * count // num_shards)
          for i in range(num_shards)]


# --------------------------------------------------------------- execution


def _run_jobs(jobs, workers, output_dir):
  """Runs the shards not done yet; returns their records in job order."""
  done, todo = {}, []
  for job in jobs:
    record = shard_worker.finished_record(output_dir, job['file'])
    if record is None:
      todo.append(job)
    else:
      done[job['file']] = record
  if done:
    logging.info('Resuming: %d of %d shards already complete.', len(done),
                 len(jobs))
  total = sum(len(job['videos']) for job in todo)
  with tqdm.tqdm(total=total, desc='prepare', unit='video',
                 disable=not total) as progress:
    if workers == 1 or len(todo) <= 1:
      try:
        for result in map(shard_worker.prepare_shard, todo):
          done[result['file']] = result
          progress.update(result['num_videos'])
      finally:
        shard_worker.close_archives()
    else:
      context = multiprocessing.get_context('spawn')
      with context.Pool(min(workers, len(todo))) as pool:
        for result in pool.imap_unordered(shard_worker.prepare_shard, todo):
          done[result['file']] = result
          progress.update(result['num_videos'])
  return [done[job['file']] for job in jobs]


# ---------------------------------------------------------------- manifest


def _manifest(settings, plan, results) -> dict:
  """The manifest of the finished shards, with every skipped video."""
  by_file = {r['file']: r for r in results}
  skipped = [{'video': name, 'reason': reason}
             for r in results for name, reason in r['skipped']]
  skipped += [{'video': name, 'reason': reason}
              for name, reason in plan['listing_skipped']]
  split_entries = {}
  for split, names in plan['layout'].items():
    shards = [{'file': n, 'num_clips': by_file[n]['num_clips'],
               'sha256': by_file[n]['sha256']} for n in names]
    split_entries[split] = {
        'num_clips': sum(s['num_clips'] for s in shards), 'shards': shards,
        'num_frames': sum(by_file[n]['num_frames'] for n in names)}
  return {
      'format': prepare_settings.FORMAT,
      'labels': plan['labels'],
      'splits': split_entries,
      # short_side is a maximum: videos with a smaller short side keep it.
      'frames': {'fps': settings['fps'], 'short_side': settings['short_side'],
                 'jpeg_quality': settings['jpeg_quality'],
                 'min_frames': settings['min_frames']},
      'source': {'kind': settings['source'], 'video_dir': settings['video_dir'],
                 'ucf101_url': settings['ucf101_url']},
      'settings': json.loads(shard_worker.dumps(
          prepare_settings.output_settings(settings))),
      'skipped': sorted(skipped, key=lambda s: (s['video'], s['reason'])),
  }


def _log_summary(manifest) -> None:
  """Logs what was written: classes, clips per split, shards, skipped."""
  shards = [s for split in manifest['splits'].values()
            for s in split['shards']]
  reasons = collections.Counter(
      s['reason'].split(':')[0] for s in manifest['skipped'])
  logging.info('prepared %d clips in %d shards, skipped %d (%s)',
               sum(s['num_clips'] for s in shards), len(shards),
               len(manifest['skipped']),
               ', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))
               or 'none')
  logging.info('%d classes: %s', len(manifest['labels']),
               ', '.join(manifest['labels']))
  logging.info('clips per split: %s', ', '.join(
      f'{split} {entry["num_clips"]}'
      for split, entry in manifest['splits'].items()))


def _remove_stale(output_dir: str) -> None:
  """Deletes `*.tmp-*` files and folders a killed run left behind."""
  for folder in (output_dir, os.path.join(output_dir, STATE_DIR)):
    for name in os.listdir(folder):
      if TMP_MARK in name:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.remove(path)


# -------------------------------------------------------------------- CLI


def _define_flags():
  """Defines the flags; called by `run` only, so importing defines none."""
  f = flags
  f.DEFINE_enum('source', 'synthetic', prepare_settings.SOURCES,
                'Where videos come from.')
  f.DEFINE_string('output_dir', None, 'Folder for shards and manifest.json.')
  f.mark_flag_as_required('output_dir')
  f.DEFINE_string('video_dir', None,
                  '--source=folder: video_dir/<class>/<video>.')
  f.DEFINE_string('ucf101_url', sources.DEFAULT_UCF101_URL,
                  '--source=ucf101: zip URL; must answer HTTP Range requests.')
  f.DEFINE_integer('num_classes', None,
                   'Classes to keep (first N sorted); synthetic: 4 (2..6), '
                   'else all.')
  f.DEFINE_string('splits', None,
                  'Videos per class per split, seeded. Default train:48,'
                  'test:16 for synthetic (learnable, honest test), else '
                  'train:30,test:20. Ignored with --split_by=group.')
  f.DEFINE_enum('split_by', 'count', prepare_settings.SPLIT_BY,
                'count: --splits per class; group: official UCF101 fold, '
                'no group in two splits.')
  f.DEFINE_integer('fold', 1, '--split_by=group: UCF101 fold 1..3.')
  f.DEFINE_integer('seed', 0, 'Seed for splits, shard order, synthetic.')
  f.DEFINE_float('fps', 0,
                 'Keep this many frames per second; 0 keeps the source rate, '
                 'so the pipeline\'s frame_step (15 at 25-30 fps UCF101) '
                 'keeps its meaning.')
  f.DEFINE_integer('short_side', None,
                   'Downscale so the short side is at most this many px; '
                   'never upscale (a smaller video keeps its size); 0 keeps '
                   'every size. Default 256 for all sources: MoViNet trains '
                   'on 172-320 px crops and random-resized crops need '
                   'margin; upscaling adds bytes, not information.')
  f.DEFINE_integer('jpeg_quality', 90, 'JPEG quality 1..100.')
  f.DEFINE_integer('shard_clips', 64, 'Videos per shard.')
  f.DEFINE_integer('num_shards', None, 'Shards per split (overrides '
                   '--shard_clips).')
  f.DEFINE_integer('workers', None, 'Processes; default os.cpu_count().')
  f.DEFINE_integer('min_frames', 8,
                   'Skip videos with fewer frames (after --fps); shorter '
                   'clips still work, the pipeline loops them.')
  f.DEFINE_string('synthetic_dir', None, 'Cache of generated videos; '
                  'default output_dir/source_videos.')
  f.DEFINE_integer('synthetic_frames', SYNTHETIC_FRAMES,
                   'Frames per synthetic video.')
  f.DEFINE_list('synthetic_size', [str(v) for v in SYNTHETIC_SIZE],
                'Synthetic height,width in px.')
  f.DEFINE_float('synthetic_fps', SYNTHETIC_FPS, 'Synthetic frame rate.')
  return flags.FLAGS


def main(argv):
  del argv
  values = {name: flags.FLAGS[name].value for name in _FLAG_NAMES}
  values['fps'] = values['fps'] or None
  values['synthetic_size'] = tuple(int(v) for v in values['synthetic_size'])
  try:
    prepare(**values)
  except (PrepareError, sources.RemoteArchiveError) as e:
    sys.exit(f'movinet-prepare: error: {e}')


_FLAG_NAMES = ('source', 'output_dir', 'video_dir', 'ucf101_url',
               'num_classes', 'splits', 'split_by', 'fold', 'seed', 'fps',
               'short_side', 'jpeg_quality', 'shard_clips', 'num_shards',
               'workers', 'min_frames', 'synthetic_dir', 'synthetic_frames',
               'synthetic_size', 'synthetic_fps')


def run():
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
