"""One shard of `movinet-prepare`: decode videos, JPEG them, write, record.

`prepare_shard(job)` runs in a `spawn` worker process, so this module imports
neither TensorFlow nor `schema` (see `tfrecord_writer`). A shard is written
as `<shard>.tmp-<token>`, fsynced and renamed; then `.prepare/<shard>.json`
records its clip count, sha256 and skipped videos, which `finished_record`
reads back to decide whether a rerun may keep the shard.

The token is unique to one run (`new_token`: pid and random hex). Before a
run creates a temporary path it records it in `.prepare/temporaries`
(`record_temporaries`), so that a later run removes exactly the leftovers
of killed runs (`remove_recorded`) and never another file with `.tmp-` in
its name.
"""

import json
import os
import re
import secrets
import shutil

from absl import logging
import cv2
import numpy as np

from trainer import files
from trainer.data import sources
from trainer.data import tfrecord_writer
from trainer.data import video_decode

STATE_DIR = '.prepare'
# Relative paths of the temporaries runs create, one JSON string a line.
JOURNAL_NAME = 'temporaries'
_TEMPORARY = re.compile(re.escape(files.TMP_MARK) + r'[0-9]+-[0-9a-f]{16}$')


def prepare_shard(job: dict) -> dict:
  """Decodes a shard's videos and writes the shard; runs in a worker.

  Args:
    job: one entry of the plan `prepare` builds: `file`, `output_dir`,
      `token` (the run's, see `new_token`), `source`, `root`, `url`,
      `videos` (`[(name, label, index)]`), `fps`, `short_side` (a maximum in
      px, or None), `min_frames`, `jpeg_quality`. Its temporaries,
      `job_temporaries(job)`, must be recorded before it runs.

  Returns:
    `{file, num_clips, num_frames, num_videos, sha256, size, label_indices,
    skipped}` (`size` in bytes; `label_indices` the distinct label indices
    of the clips written), also written to `output_dir/.prepare/<file>.json`
    once the shard is in place.
  """
  out = job['output_dir']
  final = os.path.join(out, job['file'])
  skipped, num_clips, num_frames = [], 0, 0
  with files.replacing(final, job['token']) as temporary, open(
      temporary, 'wb') as f:
    for name, label, index in job['videos']:
      try:
        frames = _decode(job, name)
      except video_decode.VideoDecodeError as e:
        skipped.append((name, e.reason))
        continue
      quality = [cv2.IMWRITE_JPEG_QUALITY, job['jpeg_quality']]
      jpegs = [cv2.imencode('.jpg', frame[..., ::-1], quality)[1].tobytes()
               for frame in frames]
      f.write(tfrecord_writer.tfrecord_frame(
          tfrecord_writer.encode_sequence_example(
              index, label, name, jpegs)))
      num_clips += 1
      num_frames += len(jpegs)
    f.flush()
    os.fsync(f.fileno())
  record = {'file': job['file'], 'num_clips': num_clips,
            'num_frames': num_frames, 'num_videos': len(job['videos']),
            'sha256': files.sha256(final), 'size': os.path.getsize(final),
            'label_indices': sorted({
                int(i) for n, _, i in job['videos']
                if n not in {name for name, _ in skipped}}),
            'skipped': sorted(skipped)}
  files.write_atomically(os.path.join(out, _record_name(job['file'])),
                         dumps(record), job['token'])
  return record


def job_temporaries(job: dict) -> list[str]:
  """The temporaries `prepare_shard(job)` may create, relative to output."""
  paths = [files.temporary_name(job['file'], job['token']),
           files.temporary_name(_record_name(job['file']), job['token'])]
  if job['source'] == 'ucf101':
    paths.append(_fetch_folder(job))
  return paths


def _record_name(name):
  return os.path.join(STATE_DIR, name + '.json')


def _fetch_folder(job):
  """Folder, relative to output, where the job's UCF101 videos land."""
  return files.temporary_name(
      os.path.join(STATE_DIR, f'fetch-{job["file"]}'), job['token'])


def finished_record(output_dir: str, name: str) -> dict | None:
  """The record of a complete shard `name`, or None to (re)do it."""
  record_path = os.path.join(output_dir, _record_name(name))
  shard_path = os.path.join(output_dir, name)
  if not (os.path.exists(record_path) and os.path.exists(shard_path)):
    return None
  with open(record_path, encoding='utf-8') as f:
    record = json.load(f)
  if record.get('sha256') != files.sha256(shard_path):
    logging.warning('Shard %s does not match its record; redoing it.', name)
    return None
  return record


def decode_capped(path: str, fps: float | None, short_side: int | None,
                  min_frames: int) -> np.ndarray:
  """RGB frames `(frames, height, width, 3)`, short side at most `short_side`.

  A video whose short side exceeds `short_side` px is downscaled to it
  (aspect kept); a smaller one keeps its size: upscaling adds bytes, not
  information. None keeps every size.
  """
  return video_decode.decode_video(path, fps=fps, short_side=short_side,
                                   min_frames=min_frames,
                                   upscale=False).frames


def _decode(job, name):
  """RGB frames `(frames, height, width, 3)` of the job's video `name`."""
  options = (job['fps'], job['short_side'], job['min_frames'])
  if job['source'] != 'ucf101':
    return decode_capped(os.path.join(job['root'], name), *options)
  folder = os.path.join(job['output_dir'], _fetch_folder(job))
  path = os.path.join(folder, os.path.basename(name))
  try:
    _archive(job['url']).fetch(name, path)
    return decode_capped(path, *options)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


_ARCHIVES = {}


def _archive(url):
  """One `Ucf101Archive` per process and URL, opened on first use."""
  if url not in _ARCHIVES:
    _ARCHIVES[url] = sources.Ucf101Archive(url)
  return _ARCHIVES[url]


def close_archives() -> None:
  """Closes the UCF101 archives this process opened."""
  while _ARCHIVES:
    _ARCHIVES.popitem()[1].close()


# ------------------------------------------------------------------- files


def dumps(value) -> str:
  """`value` as stable JSON text: sorted keys, one-space indent, newline."""
  return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


# -------------------------------------------------------------- temporaries


def new_token() -> str:
  """A token unique to this run: `<pid>-<16 random hex digits>`."""
  return f'{os.getpid()}-{secrets.token_hex(8)}'


def record_temporaries(output_dir: str, paths: list[str]) -> None:
  """Records temporaries (relative to `output_dir`) before they are created.

  Appends to `.prepare/temporaries` and fsyncs, so that `remove_recorded`
  finds them even if this run is killed. Only the holder of the
  `output_dir` lock may call it.
  """
  lines = ''.join(json.dumps(p, ensure_ascii=False) + '\n' for p in paths)
  with open(os.path.join(output_dir, STATE_DIR, JOURNAL_NAME), 'a',
            encoding='utf-8') as f:
    f.write(lines)
    f.flush()
    os.fsync(f.fileno())


def remove_recorded(output_dir: str) -> list[str]:
  """Removes the recorded temporaries that exist, then the record.

  Only paths inside `output_dir` whose name ends in `.tmp-<token>` are
  removed; a line cut short by a kill is ignored (its path was never
  created: recording comes first).

  Returns:
    The removed paths, relative to `output_dir`.
  """
  journal = os.path.join(output_dir, STATE_DIR, JOURNAL_NAME)
  try:
    with open(journal, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  removed = []
  for line in lines:
    try:
      relative = json.loads(line)
    except ValueError:
      continue
    if not _is_temporary(relative):
      continue
    path = os.path.join(output_dir, relative)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)
    else:
      continue
    removed.append(relative)
  os.remove(journal)
  return removed


def _is_temporary(relative) -> bool:
  """Whether a recorded path is one this module names, inside output_dir."""
  if not isinstance(relative, str) or os.path.isabs(relative):
    return False
  parts = os.path.normpath(relative).split(os.sep)
  return '..' not in parts and bool(_TEMPORARY.search(parts[-1]))
