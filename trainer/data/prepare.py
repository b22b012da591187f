"""Preparation: videos -> TFRecord shards + `manifest.json`.

`prepare(output_dir, **flags)` is what `movinet-prepare` runs
(`trainer/prepare_main.py`); the flags are those of `PrepareSettings`:

  prepare('/data/synthetic')                                # 4 classes
  prepare('/data/mine', source='folder', video_dir='/videos')
  prepare('/data/ucf101_10', source='ucf101', num_classes=10,
          split_by='group')

List the source, pick classes, split, then cut each split into shards
(`prepare_plan`). Each shard is one job of a `spawn` process pool; a worker
(`shard_worker`) streams its videos through OpenCV (PyAV for what OpenCV
cannot decode, such as AV1), downscaling any whose short side exceeds
`short_side` (smaller ones keep their size), JPEG-encodes the frames as they
come and writes the shard with the pure-Python `tfrecord_writer`; a video
longer than `max_seconds` becomes consecutive records (`video/segment`). A
shard is written as `<shard>.tmp-<token>`, fsynced and renamed; then
`.prepare/<shard>.json` records its record count, sha256, skipped videos
and each video's decoder. Settings and their checks live in
`prepare_settings`.

Rerunning the same preparation resumes: shards whose record matches their
sha256 are kept, the rest are redone, and the result is byte-identical to
an uninterrupted run. Different settings in the same `output_dir` are
refused.

Only preparation's own files are written or deleted: the shards,
`manifest.json`, `.prepare/` and (synthetic) `source_videos/`. Every
temporary name carries a token unique to the run and is recorded in
`.prepare/temporaries` before it is created; a rerun removes exactly those a
killed run left. A non-empty `output_dir` that is not a previous
preparation is refused unless `overwrite`, which prepares beside its
entries; a second run into the same `output_dir` while one holds
`.prepare/lock` is refused; an `output_dir` inside `video_dir` is refused.
"""

import collections
import multiprocessing
import os
import re
import time
from typing import Optional

from absl import logging
import tqdm

# Nothing here imports TensorFlow: `spawn` workers re-import this module.
from trainer import files
from trainer.data import prepare_lock
from trainer.data import prepare_plan
from trainer.data import prepare_settings
from trainer.data import schema
from trainer.data import shard_worker
from trainer.data.manifest import Frames
from trainer.data.manifest import Manifest
from trainer.data.manifest import Shard
from trainer.data.manifest import Skipped
from trainer.data.manifest import Source
from trainer.data.manifest import Split
from trainer.data.manifest import Video
from trainer.data.prepare_plan import Plan
from trainer.data.prepare_settings import PrepareError
from trainer.data.prepare_settings import PrepareSettings
from trainer.data.shard_worker import ShardJob
from trainer.data.shard_worker import ShardResult
from trainer.data.shard_worker import STATE_DIR

# Seconds between looks at a folder another process prepares, and between
# the log lines saying so (`prepare_once`).
_WAIT_POLL_S, _WAIT_LOG_S = 0.5, 60


def prepare(output_dir: str, **flags) -> Manifest:
  """Prepares a dataset; see the module docstring.

  With `workers > 1` shards run in a `spawn` pool, which re-imports the
  caller's main module: a calling script needs `if __name__ == '__main__':`.

  Args:
    output_dir: the folder to write (flag --output_dir).
    **flags: the other fields of `PrepareSettings`, as the flags of the
      same names; unset ones take its defaults. `overwrite` lets a
      non-empty `output_dir` that is not a previous preparation be prepared
      into: its entries stay, except files named as a shard, which are
      replaced (each named in a warning).

  Returns:
    The manifest written to `output_dir/manifest.json`.

  Raises:
    PrepareError: bad settings, a source that cannot be listed or split,
      an `output_dir` inside `video_dir`, prepared with other settings, not
      empty and not a previous preparation (without `overwrite`), or being
      prepared by another run; nothing is written.
    sources.RemoteArchiveError: the UCF101 zip failed during fetching.
  """
  settings = PrepareSettings(output_dir, **flags)
  prepare_settings.check_output_dir(settings)
  prepare_settings.check_previous(settings)
  token = shard_worker.new_token()
  plan = prepare_plan.make_plan(settings, token)  # writes nothing
  state_dir = os.path.join(settings.output_dir, STATE_DIR)
  previous = os.path.isdir(state_dir) or os.path.exists(
      os.path.join(settings.output_dir, schema.MANIFEST_NAME))
  os.makedirs(state_dir, exist_ok=True)
  prepare_lock.acquire_lock(settings.output_dir, token)
  try:
    manifest = _prepare_locked(settings, plan, token, previous)
  finally:
    try:  # this run's temporaries, after an error
      shard_worker.remove_recorded(settings.output_dir)
    finally:
      prepare_lock.release_lock(settings.output_dir, token)
  _log_summary(manifest)
  return manifest


def prepare_once(output_dir: str, **flags) -> None:
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
      prepare(output_dir, **flags)
    except prepare_lock.PreparationBusy as busy:
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


def synthetic_data_dir(cache_dir: Optional[str] = None,
                       num_classes: int = 4) -> str:
  """Prepares the embedded synthetic dataset once and returns its folder.

  Several processes may ask at once (see `prepare_once`). Workers with
  caches of their own each prepare the same data (it is generated from a
  fixed seed).

  Args:
    cache_dir: where to keep it; `$TRAINER_CACHE_DIR` (default
      `~/.cache/movinet-trainer`) if None.
    num_classes: synthetic motion classes (4 translations; up to 6).

  Returns:
    `<cache_dir>/synthetic-<num_classes>`, prepared (a rerun reuses it; an
    interrupted preparation resumes).
  """
  data_dir = os.path.join(files.cache_dir(cache_dir),
                          f'synthetic-{num_classes}')
  prepare_once(data_dir, source='synthetic', num_classes=num_classes,
               workers=1)
  return data_dir


def _prepare_locked(settings: PrepareSettings, plan: Plan, token: str,
                    previous: bool) -> Manifest:
  """Writes output_dir; runs while this run holds its lock."""
  output_dir = settings.output_dir
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
      *(p for job in plan.jobs for p in shard_worker.job_temporaries(job))])
  files.write_atomically(os.path.join(output_dir, settings_name),
                         files.json_text(settings.recorded()), token)
  if settings.source == 'synthetic':
    prepare_plan.generate_synthetic(settings, plan)
  results = _run_jobs(plan.jobs, settings.workers, output_dir)
  return _manifest(settings, plan, results).write(output_dir, token)


def _warn_replaced(output_dir: str, plan: Plan) -> None:
  """Names the files of a foreign output_dir (--overwrite) a shard replaces."""
  replaced = [job.file for job in plan.jobs
              if os.path.lexists(os.path.join(output_dir, job.file))]
  if replaced:
    logging.warning('--overwrite: replacing %d files of output_dir named as '
                    'shards: %s', len(replaced), ', '.join(replaced))


def _run_jobs(jobs: tuple[ShardJob, ...], workers: int,
              output_dir: str) -> list[ShardResult]:
  """Runs the shards not done yet; returns their results in job order."""
  done, todo = {}, []
  for job in jobs:
    record = shard_worker.finished_record(output_dir, job.file)
    if record is None:
      todo.append(job)
    else:
      done[job.file] = record
  if done:
    logging.info('Resuming: %d of %d shards already complete.', len(done),
                 len(jobs))
  total = sum(len(job.videos) for job in todo)
  with tqdm.tqdm(total=total, desc='prepare', unit='video',
                 disable=not total) as progress:
    if workers == 1 or len(todo) <= 1:
      try:
        for result in map(shard_worker.prepare_shard, todo):
          done[result.file] = result
          progress.update(result.num_videos)
      finally:
        shard_worker.close_archives()
    else:
      context = multiprocessing.get_context('spawn')
      with context.Pool(min(workers, len(todo))) as pool:
        for result in pool.imap_unordered(shard_worker.prepare_shard, todo):
          done[result.file] = result
          progress.update(result.num_videos)
  return [done[job.file] for job in jobs]


def _manifest(settings: PrepareSettings, plan: Plan,
              results: list[ShardResult]) -> Manifest:
  """The manifest of the finished shards, with every skipped video."""
  by_file = {r.file: r for r in results}
  skipped = [Skipped(name, reason) for r in results
             for name, reason in r.skipped]
  skipped += [Skipped(name, reason) for name, reason in plan.listing_skipped]
  splits = {}
  for split, names in plan.layout.items():
    shards = tuple(Shard(file=r.file, num_clips=r.num_clips, sha256=r.sha256,
                         size=r.size, label_indices=r.label_indices)
                   for r in (by_file[n] for n in names))
    splits[split] = Split(num_clips=sum(s.num_clips for s in shards),
                          shards=shards,
                          num_frames=sum(by_file[n].num_frames for n in names))
  return Manifest(
      format=prepare_settings.FORMAT,
      labels=plan.labels,
      splits=splits,
      # short_side is a maximum: videos with a smaller short side keep it.
      frames=Frames(fps=settings.fps, short_side=settings.short_side,
                    jpeg_quality=settings.jpeg_quality,
                    min_frames=settings.min_frames,
                    max_seconds=settings.max_seconds),
      source=Source(kind=settings.source, video_dir=settings.video_dir,
                    ucf101_url=settings.ucf101_url),
      settings=settings.recorded(),
      skipped=tuple(sorted(skipped, key=lambda s: (s.video, s.reason))),
      videos=tuple(sorted(
          (Video(video=name, shard=r.file, decoder=decoder,
                 segments=segments, frames=frames)
           for r in results for name, decoder, segments, frames in r.videos),
          key=lambda v: v.video)))


def _log_summary(manifest: Manifest) -> None:
  """Logs what was written: classes, clips per split, shards, skipped,
  decoders."""
  shards = [s for split in manifest.splits.values() for s in split.shards]
  # 'truncated after frame 37' and 'too short: 3 frames < 8' count as
  # 'truncated after frame N' and 'too short'.
  reasons = collections.Counter(
      re.sub(r' \d+$', ' N', s.reason.split(':')[0])
      for s in manifest.skipped)
  logging.info('prepared %d clips in %d shards, skipped %d (%s)',
               sum(s.num_clips for s in shards), len(shards),
               len(manifest.skipped),
               ', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))
               or 'none')
  decoders = collections.Counter(v.decoder for v in manifest.videos)
  logging.info('videos read by %s; %d longer than --max_seconds=%g split '
               'into segments', ', '.join(
                   f'{d} {n}' for d, n in sorted(decoders.items())) or 'none',
               sum(v.segments > 1 for v in manifest.videos),
               manifest.frames.max_seconds)
  logging.info('%d classes: %s', manifest.num_classes,
               ', '.join(manifest.labels))
  logging.info('clips per split: %s', ', '.join(
      f'{name} {split.num_clips}' for name, split in manifest.splits.items()))
  folders = [s for s in manifest.skipped if s.video.endswith('/')]
  if folders:
    logging.info('skipped %d folders: %s', len(folders), ', '.join(
        f'{s.video} ({s.reason})' for s in folders))


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
  try:
    manifest = Manifest.read(output_dir)
  except ValueError as e:
    raise PrepareError(f'--output_dir={output_dir} holds no readable '
                       f'{schema.MANIFEST_NAME} ({type(e).__name__}: {e}); '
                       'prepare it first.') from e
  shards = [s for split in manifest.splits.values() for s in split.shards]
  problems = []
  for shard in tqdm.tqdm(shards, desc='verify', unit='shard'):
    shard_path = manifest.shard_path(shard)
    if not os.path.isfile(shard_path):
      problems.append(f'{shard.file} (missing)')
    elif shard.sha256 is None:
      problems.append(f'{shard.file} (no sha256 in the manifest)')
    elif shard.size is not None and os.path.getsize(shard_path) != shard.size:
      problems.append(f'{shard.file} ({os.path.getsize(shard_path)} '
                      f'bytes, the manifest records {shard.size})')
    elif files.sha256(shard_path) != shard.sha256:
      problems.append(f'{shard.file} (sha256 differs)')
  return problems
