"""Turns a checkpoint source into a TensorFlow checkpoint prefix.

A source is a checkpoint prefix, a directory holding a checkpoint, a
`.tar.gz` / `.tgz` / `.tar` archive of one (the official MoViNet releases), or
an `http(s)://` URL of such an archive. Downloads and extractions are cached
under `cache_dir` and written atomically, so a killed run never leaves a
half-written file that a later run would trust.

A download is cached by its whole URL, `downloads/<url-digest>/<file name>`
(the digest is the start of the URL's sha256), so two URLs that end in the
same file name never share an entry. An extraction is cached by the
archive's contents, `extracted/<stem>-<archive-digest>`, so it follows the
download it came from.

Example:

  prefix = resolve_checkpoint(
      'https://storage.googleapis.com/tf_model_garden/vision/movinet/'
      'movinet_a0_base.tar.gz')
  reader = tf.train.load_checkpoint(prefix)
"""

import hashlib
import http.client
import os
import posixpath
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib

from absl import logging
import tensorflow as tf
import tqdm

from trainer import files

DOWNLOAD_TIMEOUT_S = 30.0
ARCHIVE_SUFFIXES = ('.tar.gz', '.tgz', '.tar')
URL_SCHEMES = ('http://', 'https://')

_DOWNLOAD_CHUNK_BYTES = 1 << 20
_DIGEST_CHARS = 12
_ACCEPTED = (
    'a checkpoint prefix (the path without ".index"), a directory holding a '
    'checkpoint, a .tar.gz/.tgz/.tar archive of one, or an http(s):// URL of '
    'such an archive')


class CheckpointDownloadError(OSError):
  """A checkpoint URL could not be downloaded; nothing was left in the cache."""


def resolve_checkpoint(source: str, cache_dir: str | None = None) -> str:
  """Returns the local checkpoint prefix that `source` designates.

  Args:
    source: A checkpoint prefix (`/x/ckpt-1` where `/x/ckpt-1.index` exists),
      a directory holding a checkpoint (directly or one subdirectory down), a
      `.tar.gz`/`.tgz`/`.tar` archive of such a directory, or an `http://` or
      `https://` URL of such an archive.
    cache_dir: Where downloads (`downloads/<url-digest>/<file name>`) and
      extracted archives (`extracted/<stem>-<archive-digest>`) are kept.
      Defaults to `$TRAINER_CACHE_DIR`, else `~/.cache/movinet-trainer`.

  Returns:
    The prefix to pass to `tf.train.load_checkpoint`.

  Raises:
    ValueError: `source` is none of the accepted forms, an archive is corrupt
      or holds an unsafe member, or no single checkpoint is found.
    CheckpointDownloadError: A URL could not be downloaded.
  """
  if isinstance(source, os.PathLike):
    source = os.fspath(source)
  if not isinstance(source, str) or not source:
    raise ValueError(f'source={source!r} is not a checkpoint; expected '
                     f'{_ACCEPTED}.')
  if source.lower().startswith(URL_SCHEMES):
    if _archive_suffix(_url_filename(source)) is None:
      raise ValueError(
          f'source={source!r}: a URL must name a {"/".join(ARCHIVE_SUFFIXES)} '
          'archive; download other files yourself and pass the local path.')
    cache_dir = files.cache_dir(cache_dir)
    archive = _download(source, os.path.join(cache_dir, 'downloads'))
    return _resolve_directory(_extract_archive(archive, cache_dir))
  source = os.path.expanduser(source)
  if tf.io.gfile.exists(source + '.index'):
    return source
  if tf.io.gfile.isdir(source):
    return _resolve_directory(source)
  if _archive_suffix(source) is not None and os.path.isfile(source):
    cache_dir = files.cache_dir(cache_dir)
    return _resolve_directory(_extract_archive(source, cache_dir))
  problem = ('does not exist' if not tf.io.gfile.exists(source) else
             'is neither an archive nor a checkpoint prefix')
  raise ValueError(f'source={source!r} {problem}; expected {_ACCEPTED}.')


def _archive_suffix(name: str) -> str | None:
  """Returns the archive suffix `name` ends with, or None."""
  lowered = name.lower()
  return next((s for s in ARCHIVE_SUFFIXES if lowered.endswith(s)), None)


# Checkpoint directories.


def _resolve_directory(directory: str) -> str:
  """Finds the single checkpoint in `directory` or one level below it."""
  candidates = _checkpoints_in(directory)
  if not candidates:
    for name in sorted(tf.io.gfile.listdir(directory)):
      subdirectory = os.path.join(directory, name.rstrip('/'))
      if tf.io.gfile.isdir(subdirectory):
        candidates.extend(_checkpoints_in(subdirectory))
  if len(candidates) == 1:
    return candidates[0]
  if not candidates:
    raise ValueError(
        f'No checkpoint (no "checkpoint" state file, no *.index file) in '
        f'{directory!r} or its immediate subdirectories; pass {_ACCEPTED}.')
  raise ValueError(
      f'Several checkpoints in {directory!r}: {", ".join(candidates)}; pass '
      'the prefix of the one to load as source.')


def _checkpoints_in(directory: str) -> list[str]:
  """Returns the latest checkpoint of `directory`, else all its prefixes."""
  latest = tf.train.latest_checkpoint(directory)
  if latest:
    return [latest]
  pattern = os.path.join(directory, '*.index')
  return sorted(path[:-len('.index')] for path in tf.io.gfile.glob(pattern))


# Archives.


def _extract_archive(archive: str, cache_dir: str) -> str:
  """Extracts `archive` once into the cache and returns the directory."""
  name = os.path.basename(archive)
  stem = name[:-len(_archive_suffix(name))]
  digest = files.sha256(archive)[:_DIGEST_CHARS]
  parent = os.path.join(cache_dir, 'extracted')
  target = os.path.join(parent, f'{stem}-{digest}')
  if os.path.isdir(target):
    logging.info('Reusing %s extracted in %s', archive, target)
    return target
  os.makedirs(parent, exist_ok=True)
  logging.info('Extracting %s into %s', archive, target)
  # A concurrent extraction that finished first is kept.
  with files.replacing_directory(target) as staging:
    _safe_extract(archive, staging)
  return target


def _safe_extract(archive: str, destination: str) -> None:
  """Extracts `archive` into `destination` after vetting every member."""
  try:
    with tarfile.open(archive, 'r:*') as tar:
      members = tar.getmembers()
      for member in members:
        _check_member(archive, member)
      tar.extractall(destination, members=members, filter='data')
  except (tarfile.TarError, EOFError, zlib.error) as e:
    raise ValueError(f'{archive!r} is not a readable tar archive ({e}); '
                     'delete it and download it again.') from e


def _check_member(archive: str, member: tarfile.TarInfo) -> None:
  """Raises ValueError if `member` could write outside its directory."""
  name = member.name.replace('\\', '/')
  if posixpath.isabs(name):
    problem = 'has an absolute path'
  elif '..' in name.split('/'):
    problem = 'has a ".." path component'
  elif member.issym() or member.islnk():
    problem = f'is a {"symlink" if member.issym() else "hardlink"}'
  elif member.isdev():
    problem = 'is a device or fifo'
  elif not (member.isfile() or member.isdir()):
    problem = 'is not a regular file or directory'
  else:
    return
  raise ValueError(
      f'Refusing to extract {archive!r}: member {member.name!r} {problem}; '
      'only regular files and directories with relative paths are allowed.')


# Downloads.


def _url_filename(url: str) -> str:
  """Returns the last component of the path of `url`."""
  return posixpath.basename(urllib.parse.urlparse(url).path)


def _url_digest(url: str) -> str:
  """The start of the hex sha256 of the whole `url`: its cache folder."""
  return hashlib.sha256(url.encode('utf-8')).hexdigest()[:_DIGEST_CHARS]


def _download(url: str, downloads_dir: str,
              timeout_s: float = DOWNLOAD_TIMEOUT_S) -> str:
  """Downloads `url` once and returns the local file.

  The file keeps its name, in a folder named by the digest of the whole URL
  (`downloads_dir/<url-digest>/<name>`), so that another URL ending in the
  same name gets its own entry.
  """
  name = _url_filename(url)
  folder = os.path.join(downloads_dir, _url_digest(url))
  target = os.path.join(folder, name)
  if os.path.isfile(target):
    logging.info('Using cached %s for %s', target, url)
    return target
  os.makedirs(folder, exist_ok=True)
  try:
    with files.replacing(target, suffix='.part') as part, open(part,
                                                                'wb') as out:
      _stream(url, out, name, timeout_s)
  except urllib.error.HTTPError as e:
    raise CheckpointDownloadError(
        f'Could not download {url}: HTTP {e.code} {e.reason}.') from e
  except urllib.error.URLError as e:
    raise CheckpointDownloadError(
        f'Could not download {url}: {e.reason} (timeout {timeout_s:g} s); '
        'check the URL and network access, or pass a local archive.') from e
  except (OSError, http.client.HTTPException) as e:
    raise CheckpointDownloadError(
        f'Could not download {url}: {type(e).__name__}: {e}.') from e
  finally:
    if not os.path.exists(target):
      try:
        os.rmdir(folder)  # Only if empty: a concurrent download may be in it.
      except OSError:
        pass
  logging.info('Downloaded %s to %s', url, target)
  return target


def _stream(url: str, out, name: str, timeout_s: float) -> None:
  """Copies the body of `url` into the binary file `out` with a progress bar."""
  with urllib.request.urlopen(url, timeout=timeout_s) as response:
    length = response.headers.get('Content-Length')
    total = int(length) if length and length.isdigit() else None
    written = 0
    with tqdm.tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                   desc=name) as progress:
      while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
        out.write(chunk)
        written += len(chunk)
        progress.update(len(chunk))
  if total is not None and written != total:
    raise http.client.IncompleteRead(b'', total - written)
