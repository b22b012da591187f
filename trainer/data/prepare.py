"""`movinet-prepare`: videos -> TFRecord shards + `manifest.json`.

  movinet-prepare --output_dir=/data/synthetic                  # 4 classes
  movinet-prepare --source=folder --video_dir=/videos --output_dir=/data/mine
  movinet-prepare --source=ucf101 --num_classes=10 --split_by=group \\
      --output_dir=/data/ucf101_10
  movinet-prepare --verify --output_dir=/data/mine   # shards vs manifest

List the source, pick classes, split, then cut each split into shards of
`shard_clips` videos (shard i holds videos [i*k, (i+1)*k) of the split, after a
seeded shuffle so every shard mixes classes). Each shard is one job of a
`spawn` process pool; a worker (`shard_worker`) decodes its videos with
OpenCV, downscaling any whose short side exceeds `short_side` (smaller ones
keep their size), JPEG-encodes the frames and writes the shard with the
pure-Python `tfrecord_writer`. A shard is written as `<shard>.tmp-<token>`,
fsynced and renamed; then `.prepare/<shard>.json` records its clip count,
sha256 and skipped videos. Settings and their checks live in
`prepare_settings`.

Rerunning the same command resumes: shards whose record matches their sha256
are kept, the rest are redone, and the result is byte-identical to an
uninterrupted run. Different settings in the same `output_dir` are refused.

Only prepare's own files are written or deleted: the shards, `manifest.json`,
`.prepare/` and (synthetic) `source_videos/`. Every temporary name carries a
token unique to the run and is recorded in `.prepare/temporaries` before it
is created; a rerun removes exactly those a killed run left. A non-empty
`output_dir` that is not a previous preparation is refused unless
`overwrite`, which prepares beside its entries; a second run into the same
`output_dir` while one holds `.prepare/lock` is refused; an `output_dir`
inside `video_dir` is refused.
"""

import collections
import json
import multiprocessing
import os
import sys
import time

from absl import flags
from absl import logging
import numpy as np
import tqdm

# Nothing here imports TensorFlow: `spawn` workers re-import this module.
from trainer import command_line
from trainer import files
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data import sources
from trainer.data import splits as splits_lib
from trainer.data import synthetic
from trainer.data.prepare_settings import (PrepareError, SYNTHETIC_FPS,
                                           SYNTHETIC_FRAMES, SYNTHETIC_SIZE)
from trainer.data.shard_worker import STATE_DIR

# Seconds between looks at a folder another process prepares, and between
# the log lines saying so (`prepare_once`).
_WAIT_POLL_S, _WAIT_LOG_S = 0.5, 60


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
    synthetic_fps: float = SYNTHETIC_FPS, overwrite: bool = False) -> dict:
  """Prepares a dataset; see the module docstring and the flags in `run`.

  Args: as the flags of the same names; None picks the per-source default
    (`splits`: DEFAULT_SPLITS; `short_side`: DEFAULT_SHORT_SIDE, the largest
    short side in px, never upscaling, 0 keeps every size; `num_classes`:
    4 synthetic, else all; `fps`: source rate; `workers`: os.cpu_count();
    `synthetic_dir`: `output_dir/source_videos`). `overwrite` lets a
    non-empty `output_dir` that is not a previous preparation be prepared
    into: its entries stay, except files named as a shard, which are
    replaced (each named in a warning).

  With `workers > 1` shards run in a `spawn` pool, which re-imports the
  caller's main module: a calling script needs `if __name__ == '__main__':`.

  Returns:
    The manifest, as written to `output_dir/manifest.json`.

  Raises:
    PrepareError: bad settings, a source that cannot be listed or split,
      an `output_dir` inside `video_dir`, prepared with other settings, not
      empty and not a previous preparation (without `overwrite`), or being
      prepared by another run; nothing is written.
    sources.RemoteArchiveError: the UCF101 zip failed during fetching.
  """
  settings = prepare_settings.check_settings(**locals())
  prepare_settings.check_output_dir(settings)
  plan = _plan(settings)  # every up-front check; writes nothing
  token = shard_worker.new_token()
  for job in plan['jobs']:
    job['token'] = token
  state_dir = os.path.join(output_dir, STATE_DIR)
  previous = os.path.isdir(state_dir) or os.path.exists(
      os.path.join(output_dir, schema.MANIFEST_NAME))
  os.makedirs(state_dir, exist_ok=True)
  prepare_settings.acquire_lock(output_dir, token)
  try:
    manifest = _prepare_locked(settings, plan, token, previous)
  finally:
    try:
      shard_worker.remove_recorded(output_dir)  # this run's, after an error
    finally:
      prepare_settings.release_lock(output_dir, token)
  _log_summary(manifest)
  return manifest


def prepare_once(output_dir: str, **settings) -> None:
  """Prepares `output_dir` unless it holds a manifest; see `prepare`.

  Several processes may call it at once (the workers of a run on one
  machine, or on machines sharing a folder): one prepares, holding the
  folder's lock, and the others wait for it (looking every
  `_WAIT_POLL_S`, saying so every `_WAIT_LOG_S`), then return.
  """
  waiting_since = last_log = None
  while not os.path.exists(os.path.join(output_dir, schema.MANIFEST_NAME)):
    if waiting_since is None:
      logging.info('Preparing %s (once).', output_dir)
    try:
      prepare(output_dir, **settings)
    except prepare_settings.PreparationBusy as busy:
      now = time.monotonic()
      if waiting_since is None:
        waiting_since = last_log = now
        logging.info('Waiting for another process to prepare it: %s', busy)
      elif now - last_log >= _WAIT_LOG_S:
        last_log = now
        logging.info('Still waiting (%.0f s): %s', now - waiting_since, busy)
      time.sleep(_WAIT_POLL_S)
  if waiting_since is not None:
    logging.info('%s is ready (waited %.0f s).', output_dir,
                 time.monotonic() - waiting_since)


def _prepare_locked(settings, plan, token, previous) -> dict:
  """Writes output_dir; runs while this run holds its lock."""
  output_dir = settings['output_dir']
  # Again under the lock: a run that ended meanwhile may have written.
  prepare_settings.check_previous(settings)
  left = shard_worker.remove_recorded(output_dir)
  if left:
    logging.info('Removed %d temporaries an interrupted run left: %s',
                 len(left), ', '.join(left))
  if not previous:
    _warn_replaced(output_dir, plan)
  settings_name = os.path.join(STATE_DIR, prepare_settings.SETTINGS_NAME)
  shard_worker.record_temporaries(output_dir, [
      files.temporary_name(settings_name, token),
      files.temporary_name(schema.MANIFEST_NAME, token),
      *(p for job in plan['jobs'] for p in shard_worker.job_temporaries(job))])
  files.write_atomically(
      os.path.join(output_dir, settings_name),
      shard_worker.dumps(prepare_settings.output_settings(settings)), token)
  if settings['source'] == 'synthetic':
    _generate_synthetic(settings, plan)
  results = _run_jobs(plan['jobs'], settings['workers'], output_dir)
  manifest = _manifest(settings, plan, results)
  files.write_atomically(os.path.join(output_dir, schema.MANIFEST_NAME),
                               shard_worker.dumps(manifest), token)
  return manifest


def _warn_replaced(output_dir, plan) -> None:
  """Names the files of a foreign output_dir (--overwrite) a shard replaces."""
  replaced = [job['file'] for job in plan['jobs']
              if os.path.lexists(os.path.join(output_dir, job['file']))]
  if replaced:
    logging.warning('--overwrite: replacing %d files of output_dir named as '
                    'shards: %s', len(replaced), ', '.join(replaced))


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
    shards = [schema.shard_entry(by_file[n]) for n in names]
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
  folders = [s for s in manifest['skipped'] if s['video'].endswith('/')]
  if folders:
    logging.info('skipped %d folders: %s', len(folders), ', '.join(
        f'{s["video"]} ({s["reason"]})' for s in folders))


# ------------------------------------------------------------------ verify


def verify(output_dir: str) -> list[str]:
  """Checks every shard a prepared `output_dir`'s manifest lists.

  Each shard file must exist and have the sha256 (and, if recorded, the
  size) the manifest records; every file is read once.

  Args:
    output_dir: the `--output_dir` of a finished `movinet-prepare`.

  Returns:
    One `<file> (<problem>)` per bad shard, in manifest order; empty if
    every shard matches.

  Raises:
    PrepareError: `output_dir` holds no readable manifest.
  """
  path = os.path.join(output_dir, schema.MANIFEST_NAME)
  try:
    with open(path, encoding='utf-8') as f:
      manifest = json.load(f)
    shards = [s for split in manifest['splits'].values()
              for s in split['shards']]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise PrepareError(f'--output_dir={output_dir} holds no readable '
                       f'{schema.MANIFEST_NAME} ({type(e).__name__}: {e}); '
                       'prepare it first.') from e
  problems = []
  for shard in tqdm.tqdm(shards, desc='verify', unit='shard'):
    shard_path = os.path.join(output_dir, shard['file'])
    if not os.path.isfile(shard_path):
      problems.append(f'{shard["file"]} (missing)')
    elif 'sha256' not in shard:
      problems.append(f'{shard["file"]} (no sha256 in the manifest)')
    elif 'size' in shard and os.path.getsize(shard_path) != shard['size']:
      problems.append(f'{shard["file"]} ({os.path.getsize(shard_path)} '
                      f'bytes, the manifest records {shard["size"]})')
    elif files.sha256(shard_path) != shard['sha256']:
      problems.append(f'{shard["file"]} (sha256 differs)')
  return problems


def _verify_main(output_dir: str) -> None:
  """`--verify`: exits non-zero naming the bad shards, else logs success."""
  try:
    problems = verify(output_dir)
  except PrepareError as e:
    sys.exit(f'movinet-prepare: error: {e}')
  if problems:
    sys.exit(f'movinet-prepare: error: {len(problems)} shard(s) of '
             f'{output_dir} do not match its manifest: '
             f'{", ".join(problems)}; rerun movinet-prepare with the same '
             'flags into a new --output_dir to repair them.')
  logging.info('Every shard of %s matches its manifest.', output_dir)


# -------------------------------------------------------------------- CLI


def _define_flags():
  """Defines the flags; called by `run` only, so importing defines none."""
  f = flags
  f.DEFINE_enum('source', 'synthetic', prepare_settings.SOURCES,
                'Where videos come from.')
  f.DEFINE_string('output_dir', None, 'Folder for shards and manifest.json.')
  f.mark_flag_as_required('output_dir')
  f.DEFINE_bool('verify', False, 'Only check the shards of --output_dir '
                'against its manifest (sha256) and exit non-zero naming the '
                'bad ones; prepares nothing.')
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
  f.DEFINE_boolean('overwrite', False,
                   'Prepare into a non-empty --output_dir that is not a '
                   'previous preparation: its entries stay (none is '
                   'deleted), files named as a shard are replaced.')
  return flags.FLAGS


def main(argv):
  del argv
  if flags.FLAGS.verify:
    _verify_main(flags.FLAGS.output_dir)
    return
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
               'synthetic_size', 'synthetic_fps', 'overwrite')


def run():
  _define_flags()
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
