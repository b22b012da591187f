"""One shard of `movinet-prepare`: decode videos, JPEG them, write, record.

`prepare_shard(job)` runs in a `spawn` worker process, so this module imports
neither TensorFlow nor `schema` (see `tfrecord_writer`). A shard is written
as `<shard>.tmp-<pid>`, fsynced and renamed; then `.prepare/<shard>.json`
records its clip count, sha256 and skipped videos, which `finished_record`
reads back to decide whether a rerun may keep the shard.
"""

import hashlib
import json
import os
import shutil

from absl import logging
import cv2
import numpy as np

from trainer.data import sources
from trainer.data import tfrecord_writer
from trainer.data import video_decode

STATE_DIR = '.prepare'
TMP_MARK = '.tmp-'


def prepare_shard(job: dict) -> dict:
  """Decodes a shard's videos and writes the shard; runs in a worker.

  Args:
    job: one entry of the plan `prepare` builds: `file`, `output_dir`,
      `source`, `root`, `url`, `videos` (`[(name, label, index)]`), `fps`,
      `short_side` (a maximum in px, or None), `min_frames`, `jpeg_quality`.

  Returns:
    `{file, num_clips, num_frames, num_videos, sha256, skipped}`, also
    written to `output_dir/.prepare/<file>.json` once the shard is in place.
  """
  out = job['output_dir']
  final = os.path.join(out, job['file'])
  temporary = f'{final}{TMP_MARK}{os.getpid()}'
  skipped, num_clips, num_frames = [], 0, 0
  with open(temporary, 'wb') as f:
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
  os.replace(temporary, final)
  record = {'file': job['file'], 'num_clips': num_clips,
            'num_frames': num_frames, 'num_videos': len(job['videos']),
            'sha256': sha256(final), 'skipped': sorted(skipped)}
  write_atomically(os.path.join(out, STATE_DIR, job['file'] + '.json'),
                   dumps(record))
  return record


def finished_record(output_dir: str, name: str) -> dict | None:
  """The record of a complete shard `name`, or None to (re)do it."""
  record_path = os.path.join(output_dir, STATE_DIR, name + '.json')
  shard_path = os.path.join(output_dir, name)
  if not (os.path.exists(record_path) and os.path.exists(shard_path)):
    return None
  with open(record_path, encoding='utf-8') as f:
    record = json.load(f)
  if record.get('sha256') != sha256(shard_path):
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
  folder = os.path.join(job['output_dir'], STATE_DIR,
                        f'fetch{TMP_MARK}{os.getpid()}')
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


def sha256(path: str) -> str:
  """Hex sha256 of the file at `path`."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` via a fsynced `<path>.tmp-<pid>` and a rename."""
  temporary = f'{path}{TMP_MARK}{os.getpid()}'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
