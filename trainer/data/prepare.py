"""`movinet-prepare`: videos -> TFRecord shards + `manifest.json`.

  movinet-prepare --output_dir=/data/synthetic                  # 4 classes
  movinet-prepare --source=folder --video_dir=/videos --output_dir=/data/mine
  movinet-prepare --source=ucf101 --num_classes=10 --split_by=group \\
      --output_dir=/data/ucf101_10

List the source, pick classes, split, then cut each split into shards of
`shard_clips` videos (shard i holds videos [i*k, (i+1)*k) of the split, after a
seeded shuffle so every shard mixes classes). Each shard is one job of a
`spawn` process pool; a worker decodes its videos with OpenCV, JPEG-encodes
the frames with OpenCV and writes the shard with a pure-Python TFRecord writer
(TensorFlow costs ~4 s and ~700 MB per process to import, and its protobuf
map order changes from process to process, which would break byte-identical
reruns). A shard is written as `<shard>.tmp-<pid>`, fsynced and renamed; then
`.prepare/<shard>.json` records its clip count, sha256 and skipped videos.

Rerunning the same command resumes: shards whose record matches their sha256
are kept, the rest are redone, and the result is byte-identical to an
uninterrupted run. Different settings in the same `output_dir` are refused.
"""

import collections
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import sys

from absl import logging
import cv2
import numpy as np
import tqdm

from trainer.data import sources
from trainer.data import splits as splits_lib
from trainer.data import video_decode

SOURCES = ('synthetic', 'folder', 'ucf101')
SPLIT_BY = ('count', 'group')
# Per-class split counts when --splits is unset. Synthetic: 64 videos per
# class, enough to learn the four motions, with a test set large enough
# (16 per class) that accuracy is not a coin flip.
DEFAULT_SPLITS = {'synthetic': 'train:48,test:16',
                  'folder': 'train:30,test:20', 'ucf101': 'train:30,test:20'}
# 256 px leaves margin for random-resized crops at MoViNet's 172..320 px.
# Synthetic videos are drawn at training size already: keep them (0).
DEFAULT_SHORT_SIDE = {'synthetic': 0, 'folder': 256, 'ucf101': 256}
SYNTHETIC_NUM_CLASSES = 4
SYNTHETIC_SIZE = (120, 160)
SYNTHETIC_FRAMES = 16
SYNTHETIC_FPS = 10.0
STATE_DIR = '.prepare'
SETTINGS_NAME = 'settings.json'
TMP_MARK = '.tmp-'
FORMAT = 'movinet-prepare/1'

# Settings that change no output byte; left out of the compatibility check.
_NOT_OUTPUT = ('workers', 'output_dir', 'synthetic_dir')


class PrepareError(ValueError):
  """Bad settings or source, found before anything is written."""


def prepare(output_dir: str, source: str = 'synthetic',
            video_dir: str | None = None,
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
    (`splits`: DEFAULT_SPLITS, `short_side`: DEFAULT_SHORT_SIDE, 0 keeps the
    source size; `num_classes`: 4 synthetic, else all; `fps`: source rate;
    `workers`: os.cpu_count(); `synthetic_dir`: `output_dir/source_videos`).

  With `workers > 1` shards run in a `spawn` pool, which re-imports the
  caller's main module: a calling script needs `if __name__ == '__main__':`.

  Returns:
    The manifest, as written to `output_dir/manifest.json`.

  Raises:
    PrepareError: bad settings, a source that cannot be listed or split, or
      an `output_dir` prepared with other settings; nothing is written.
    sources.RemoteArchiveError: the UCF101 zip failed during fetching.
  """
  settings = _settings(**locals())
  plan = _plan(settings)  # every up-front check; writes nothing
  state_dir = os.path.join(output_dir, STATE_DIR)
  os.makedirs(state_dir, exist_ok=True)
  _remove_stale(output_dir)
  _write_atomically(os.path.join(state_dir, SETTINGS_NAME),
                    _dumps(_output_settings(settings)))
  if settings['source'] == 'synthetic':
    _generate_synthetic(settings, plan)
  results = _run_jobs(plan['jobs'], settings['workers'], output_dir)
  manifest = _manifest(settings, plan, results)
  _write_atomically(os.path.join(output_dir, _manifest_name()),
                    _dumps(manifest))
  _log_summary(manifest)
  return manifest


# ---------------------------------------------------------------- settings


def _settings(**given) -> dict:
  """Checks the arguments and fills the per-source defaults."""
  s = dict(given)
  _check_choice('source', s['source'], SOURCES)
  _check_choice('split_by', s['split_by'], SPLIT_BY)
  if not s['output_dir']:
    raise PrepareError('output_dir is empty; pass a folder (flag '
                       '--output_dir).')
  if s['source'] == 'folder' and not s['video_dir']:
    raise PrepareError('source=folder needs video_dir; pass the folder of '
                       'class subfolders (flag --video_dir).')
  source = s['source']
  s['splits'] = s['splits'] or DEFAULT_SPLITS[source]
  s['short_side'] = (DEFAULT_SHORT_SIDE[source] if s['short_side'] is None
                     else s['short_side'])
  if source == 'synthetic' and s['num_classes'] is None:
    s['num_classes'] = SYNTHETIC_NUM_CLASSES
  s['fps'] = float(s['fps']) if s['fps'] else None
  s['workers'] = s['workers'] or os.cpu_count() or 1
  s['synthetic_size'] = tuple(int(v) for v in s['synthetic_size'])
  s['synthetic_fps'] = float(s['synthetic_fps'])
  for name, low, high in (('short_side', 0, None), ('jpeg_quality', 1, 100),
                          ('shard_clips', 1, None), ('workers', 1, None),
                          ('min_frames', 1, None), ('fold', 1, None),
                          ('synthetic_frames', 1, None)):
    _check_int(name, s[name], low, high)
  if s['num_shards'] is not None:
    _check_int('num_shards', s['num_shards'], 1, None)
  if s['fps'] is not None and s['fps'] < 0:
    raise PrepareError(f'fps={s["fps"]!r} is not allowed; pass a positive '
                       'rate in frames per second, or 0 for the source rate '
                       '(flag --fps).')
  if source == 'synthetic' and s['split_by'] == 'group':
    raise PrepareError('split_by=group needs UCF101 names (v_<Class>_gNN_'
                       'cNN.avi); synthetic videos have none. Use '
                       '--split_by=count.')
  s['output_dir'] = os.fspath(s['output_dir'])
  if source == 'folder':
    s['video_dir'] = os.path.abspath(os.fspath(s['video_dir']))
  else:
    s['video_dir'] = None
  if source != 'ucf101':
    s['ucf101_url'] = None
  if source != 'synthetic':
    for name in ('synthetic_frames', 'synthetic_size', 'synthetic_fps'):
      s[name] = None
  s['synthetic_dir'] = (s['synthetic_dir'] if source != 'synthetic' or
                        s['synthetic_dir'] else
                        os.path.join(s['output_dir'], 'source_videos'))
  return s


def _check_choice(name, value, allowed):
  if value not in allowed:
    raise PrepareError(f'{name}={value!r} is not allowed; pass one of '
                       f'{", ".join(allowed)} (flag --{name}).')


def _check_int(name, value, low, high):
  if (isinstance(value, bool) or not isinstance(value, int) or value < low
      or (high is not None and value > high)):
    allowed = f'{low}..{high}' if high is not None else f'>= {low}'
    raise PrepareError(f'{name}={value!r} is not allowed; pass an integer '
                       f'{allowed} (flag --{name}).')


def _output_settings(settings: dict) -> dict:
  return {k: v for k, v in settings.items() if k not in _NOT_OUTPUT}


def _check_previous(settings: dict) -> None:
  """Refuses an output_dir prepared (or begun) with other settings."""
  wanted = json.loads(_dumps(_output_settings(settings)))
  out = settings['output_dir']
  for path, key in ((os.path.join(out, _manifest_name()), 'settings'),
                    (os.path.join(out, STATE_DIR, SETTINGS_NAME), None)):
    if not os.path.exists(path):
      continue
    with open(path, encoding='utf-8') as f:
      previous = json.load(f)
    previous = previous.get(key) if key else previous
    if previous != wanted:
      changed = sorted(k for k in set(wanted) | set(previous or {})
                       if (previous or {}).get(k) != wanted.get(k))
      raise PrepareError(
          f'output_dir={out!r} holds a dataset prepared with other settings '
          f'(differing: {", ".join(changed)}); pass a new --output_dir, or '
          'delete this one to redo it.')


# -------------------------------------------------------------------- plan


def _plan(settings: dict) -> dict:
  """Lists, selects, splits and cuts shards; raises PrepareError early."""
  _check_previous(settings)
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
  from trainer.data import schema  # pylint: disable=g-import-not-at-top
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
          'jpeg_quality': settings['jpeg_quality'],
          'keys': (schema.LABEL_INDEX_KEY, schema.LABEL_TEXT_KEY,
                   schema.FILENAME_KEY, schema.IMAGE_KEY)})
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
  from trainer.data import synthetic  # pylint: disable=g-import-not-at-top
  counts = splits_lib.parse_splits(settings['splits'])
  num = settings['num_classes']
  if not isinstance(num, int) or not 2 <= num <= len(synthetic.CLASS_NAMES):
    raise PrepareError(f'num_classes={num!r} is not allowed for the synthetic'
                       f' source; pass 2..{len(synthetic.CLASS_NAMES)} (flag '
                       '--num_classes).')
  entries = [sources.VideoEntry(f'{c}/{c}_{i:04d}.avi', c)
             for c in synthetic.CLASS_NAMES[:num]
             for i in range(sum(counts.values()))]
  return sources.Listing(sorted(entries, key=lambda e: (e.label, e.name))), (
      _synthetic_root(settings))


def _synthetic_root(settings) -> str:
  height, width = settings['synthetic_size']
  return os.path.join(
      settings['synthetic_dir'],
      f'f{settings["synthetic_frames"]}-{height}x{width}-'
      f'fps{settings["synthetic_fps"]:g}-seed{settings["seed"]}')


def _generate_synthetic(settings, plan):
  from trainer.data import synthetic  # pylint: disable=g-import-not-at-top
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
    record = _finished(output_dir, job['file'])
    if record is None:
      todo.append(job)
    else:
      done[job['file']] = record
  if done:
    logging.info('Resuming: %d of %d shards already complete.', len(done),
                 len(jobs))
  total = sum(len(job['videos']) for job in todo)
  with tqdm.tqdm(total=total, desc='prepare', unit='video',
                 disable=not total) as bar:
    if workers == 1 or len(todo) <= 1:
      try:
        for result in map(prepare_shard, todo):
          done[result['file']] = result
          bar.update(result['num_videos'])
      finally:
        _close_archives()
    else:
      context = multiprocessing.get_context('spawn')
      with context.Pool(min(workers, len(todo))) as pool:
        for result in pool.imap_unordered(prepare_shard, todo):
          done[result['file']] = result
          bar.update(result['num_videos'])
  return [done[job['file']] for job in jobs]


def _finished(output_dir, name):
  """The record of a complete shard `name`, or None to (re)do it."""
  record_path = os.path.join(output_dir, STATE_DIR, name + '.json')
  shard_path = os.path.join(output_dir, name)
  if not (os.path.exists(record_path) and os.path.exists(shard_path)):
    return None
  with open(record_path, encoding='utf-8') as f:
    record = json.load(f)
  if record.get('sha256') != _sha256(shard_path):
    logging.warning('Shard %s does not match its record; redoing it.', name)
    return None
  return record


def prepare_shard(job: dict) -> dict:
  """Decodes a shard's videos and writes the shard; runs in a worker.

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
      f.write(tfrecord_frame(encode_sequence_example(
          job['keys'], index, label, name, jpegs)))
      num_clips += 1
      num_frames += len(jpegs)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, final)
  record = {'file': job['file'], 'num_clips': num_clips,
            'num_frames': num_frames, 'num_videos': len(job['videos']),
            'sha256': _sha256(final), 'skipped': sorted(skipped)}
  _write_atomically(os.path.join(out, STATE_DIR, job['file'] + '.json'),
                    _dumps(record))
  return record


def _decode(job, name):
  """RGB frames `(frames, height, width, 3)` of video `name`."""
  options = {'fps': job['fps'], 'short_side': job['short_side'],
             'min_frames': job['min_frames']}
  if job['source'] != 'ucf101':
    return video_decode.decode_video(os.path.join(job['root'], name),
                                     **options).frames
  folder = os.path.join(job['output_dir'], STATE_DIR,
                        f'fetch{TMP_MARK}{os.getpid()}')
  path = os.path.join(folder, os.path.basename(name))
  try:
    _archive(job['url']).fetch(name, path)
    return video_decode.decode_video(path, **options).frames
  finally:
    shutil.rmtree(folder, ignore_errors=True)


_ARCHIVES = {}


def _archive(url):
  """One `Ucf101Archive` per process and URL, opened on first use."""
  if url not in _ARCHIVES:
    _ARCHIVES[url] = sources.Ucf101Archive(url)
  return _ARCHIVES[url]


def _close_archives():
  while _ARCHIVES:
    _ARCHIVES.popitem()[1].close()


# -------------------------------------------------- TFRecord, no TensorFlow


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(values) -> bytes:  # Feature.bytes_list{value}
  return _field(1, b''.join(_field(1, v) for v in values))


def encode_sequence_example(keys, label_index: int, label_text: str,
                            filename: str, jpegs) -> bytes:
  """`schema.encode_clip`'s record, serialized as protobuf does with
  `deterministic=True` (map keys sorted), without importing TensorFlow.

  Args:
    keys: `(label index, label text, filename, image)` keys of `schema`.
  """
  index_key, text_key, file_key, image_key = keys
  context = {
      index_key: _field(3, _field(1, _varint(label_index))),  # int64_list
      text_key: _bytes_feature([label_text.encode('utf-8')]),
      file_key: _bytes_feature([filename.encode('utf-8')]),
  }
  features = b''.join(
      _field(1, _field(1, k.encode()) + _field(2, context[k]))
      for k in sorted(context))
  frames = b''.join(_field(1, _bytes_feature([j])) for j in jpegs)
  feature_lists = _field(1, _field(1, image_key.encode()) + _field(2, frames))
  return _field(1, features) + _field(2, feature_lists)


def tfrecord_frame(data: bytes) -> bytes:
  """One TFRecord: length, masked crc32c of it, data, masked crc32c."""
  length = struct.pack('<Q', len(data))
  return b''.join((length, struct.pack('<I', _masked_crc(length)), data,
                   struct.pack('<I', _masked_crc(data))))


def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=1)
def _crc_table() -> np.ndarray:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return np.array(table, np.uint32)


@functools.lru_cache(maxsize=1)
def _crc_list() -> list:
  return _crc_table().tolist()


@functools.lru_cache(maxsize=32)
def _zeros_operator(length: int) -> tuple:
  """Tables applying "run `length` zero bytes through the register"."""
  table = _crc_table()
  bits = np.array([1 << b for b in range(32)], np.uint32)
  for _ in range(length):
    bits = table[bits & 0xFF] ^ (bits >> 8)
  bits = [int(b) for b in bits]
  tables = []
  for part in range(4):
    entries = []
    for value in range(256):
      acc = 0
      for bit in range(8):
        if value >> bit & 1:
          acc ^= bits[8 * part + bit]
      entries.append(acc)
    tables.append(entries)
  return tuple(tables)


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`, vectorized over blocks with numpy.

  The register runs over `sqrt(len)`-byte blocks side by side, then the
  block CRCs are chained with the "shift by a block of zeros" operator.
  """
  table = _crc_table()
  if len(data) < 1024:
    small = _crc_list()
    crc = 0xFFFFFFFF
    for byte in data:
      crc = small[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
  block = 1 << max(8, (len(data).bit_length() + 1) // 2)
  count = -(-len(data) // block)
  # Leading zeros leave a zero register unchanged; the 0xFFFFFFFF start is
  # the same as complementing the first four bytes from a zero register.
  buffer = np.zeros(count * block, np.uint8)
  buffer[count * block - len(data):] = np.frombuffer(data, np.uint8)
  buffer[count * block - len(data):][:4] ^= 0xFF
  columns = np.ascontiguousarray(buffer.reshape(count, block).T)
  register = np.zeros(count, np.uint32)
  for column in columns:
    register = table[(register ^ column) & 0xFF] ^ (register >> 8)
  t0, t1, t2, t3 = _zeros_operator(block)
  crc = 0
  for value in register.tolist():
    crc = (t0[crc & 0xFF] ^ t1[crc >> 8 & 0xFF] ^ t2[crc >> 16 & 0xFF]
           ^ t3[crc >> 24]) ^ value
  return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- manifest


def _manifest(settings, plan, results) -> dict:
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
      'format': FORMAT,
      'labels': plan['labels'],
      'splits': split_entries,
      'frames': {'fps': settings['fps'], 'short_side': settings['short_side'],
                 'jpeg_quality': settings['jpeg_quality'],
                 'min_frames': settings['min_frames']},
      'source': {'kind': settings['source'], 'video_dir': settings['video_dir'],
                 'ucf101_url': settings['ucf101_url']},
      'settings': json.loads(_dumps(_output_settings(settings))),
      'skipped': sorted(skipped, key=lambda s: (s['video'], s['reason'])),
  }


def _log_summary(manifest) -> None:
  shards = [s for split in manifest['splits'].values()
            for s in split['shards']]
  reasons = collections.Counter(
      s['reason'].split(':')[0] for s in manifest['skipped'])
  logging.info('prepared %d clips in %d shards, skipped %d (%s)',
               sum(s['num_clips'] for s in shards), len(shards),
               len(manifest['skipped']),
               ', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))
               or 'none')


def _manifest_name() -> str:
  from trainer.data import schema  # pylint: disable=g-import-not-at-top
  return schema.MANIFEST_NAME


def _dumps(value) -> str:
  return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _write_atomically(path: str, text: str) -> None:
  temporary = f'{path}{TMP_MARK}{os.getpid()}'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)


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
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags
  f.DEFINE_enum('source', 'synthetic', SOURCES, 'Where videos come from.')
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
  f.DEFINE_enum('split_by', 'count', SPLIT_BY,
                'count: --splits per class; group: official UCF101 fold, '
                'no group in two splits.')
  f.DEFINE_integer('fold', 1, '--split_by=group: UCF101 fold 1..3.')
  f.DEFINE_integer('seed', 0, 'Seed for splits, shard order, synthetic.')
  f.DEFINE_float('fps', 0,
                 'Keep this many frames per second; 0 keeps the source rate, '
                 'so the pipeline\'s frame_step (15 at 25-30 fps UCF101) '
                 'keeps its meaning.')
  f.DEFINE_integer('short_side', None,
                   'Resize the shorter side to this many px (0 keeps). '
                   'Default 256: MoViNet crops 172-320 px and random-resized'
                   ' crops need margin; synthetic: 0 (drawn at train size).')
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
  from absl import flags  # pylint: disable=g-import-not-at-top
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
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
