"""Where videos come from: a local class-per-folder tree, or the UCF101 zip.

Both sources answer the same question, "which videos are there and what is
each one's class?", with a `Listing` of `VideoEntry`s sorted by
`(label, name)`. Decoding the videos is not done here
(`trainer/data/video_decode.py` does it); this module deals only in names,
listings and bytes.

  Folder   `video_dir/<class name>/<video file>` -> `list_folder(video_dir)`;
           the class is the folder.
  UCF101   a zip read over HTTP Range requests, never downloaded whole ->
           `list_ucf101(url)`, and `Ucf101Archive(url)` to fetch members
           over one connection.
           The class is in the file name, `v_<Class>_g<NN>_c<NN>.<ext>`, so
           every layout lists alike: flat as in `UCF101_videos.zip`
           (`UCF101/v_ApplyEyeMakeup_g01_c01.avi`), or one folder per class
           as in the official `UCF101.rar` unpacked and zipped
           (`UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`).
"""

import contextlib
import dataclasses
import os
import pathlib
import re
from typing import Iterable
import zipfile

from absl import logging
import remotezip
import requests

from trainer import files

DEFAULT_UCF101_URL = (
    'https://storage.googleapis.com/thumos14_files/UCF101_videos.zip')
DEFAULT_TIMEOUT_S = 30.0
VIDEO_EXTENSIONS = ('.avi', '.mp4', '.mkv', '.mov', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp', '.ogv')
URL_SCHEMES = ('http://', 'https://')

NOT_A_VIDEO = 'not a video extension'
NOT_IN_CLASS_FOLDER = 'not inside a class folder'
NESTED_FOLDER = 'nested folder; videos must sit directly in <class>/'
EMPTY_CLASS_FOLDER = 'class folder has no videos'
HIDDEN_FOLDER = 'hidden folder (name starts with .)'
NOT_UCF101_NAME = 'name does not follow v_<Class>_g<NN>_c<NN>.<ext>'
FOLDER_OF_ANOTHER_CLASS = 'in the folder of another class than its name'

_UCF101_NAME = re.compile(r'v_(?P<cls>.+)_(?P<group>g\d+)_(?P<clip>c\d+)\.\w+')
_CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One video of a source.

  Attributes:
    name: Path relative to the source root, POSIX separators, e.g.
      `'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi'` (folder) or
      `'UCF101/v_ApplyEyeMakeup_g01_c01.avi'` (zip member).
    label: Class name: the folder the video sits in (folder source), or the
      `<Class>` of its file name (UCF101).
    group: UCF101 group id such as `'g01'` when the file name follows
      `v_<Class>_g<NN>_c<NN>.<ext>`, else None.
  """
  name: str
  label: str
  group: str | None = None


@dataclasses.dataclass(frozen=True)
class Listing:
  """What a source holds.

  Attributes:
    entries: Videos sorted by `(label, name)`.
    skipped: `(name, reason)` pairs for what was seen but not listed, sorted;
      reasons are the module constants (`NOT_A_VIDEO`, ...).
  """
  entries: list[VideoEntry]
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

  @property
  def labels(self) -> list[str]:
    """Sorted distinct class names of `entries`."""
    return sorted({entry.label for entry in self.entries})


class RemoteArchiveError(OSError):
  """A remote zip could not be read: unreachable, HTTP error, not a zip."""


def parse_group(filename: str) -> str | None:
  """`'v_ApplyEyeMakeup_g08_c01.avi'` -> `'g08'`; other names -> None."""
  match = _UCF101_NAME.fullmatch(filename)
  return match.group('group') if match else None


def is_video_name(name: str, extensions=VIDEO_EXTENSIONS) -> bool:
  """Whether `name` ends in one of `extensions` (case-insensitive)."""
  return name.lower().endswith(tuple(ext.lower() for ext in extensions))


def list_folder(video_dir: str | os.PathLike,
                extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> Listing:
  """Lists `video_dir/<class name>/<video>`.

  Hidden files (leading '.') are ignored. Hidden folders of `video_dir`
  (`.hidden/`), files with another extension, files outside a class folder,
  nested folders and class folders without videos are reported in
  `Listing.skipped`.

  Args:
    video_dir: The root folder; one subfolder per class.
    extensions: Lower- or upper-case suffixes that count as video files.

  Returns:
    A `Listing`; entry names are `'<class>/<file>'`.

  Raises:
    ValueError: `video_dir` is missing or not a folder, has no class
      subfolders, or no class folder holds a video.
  """
  root = pathlib.Path(video_dir)
  layout = ('expected one subfolder per class with the videos inside, '
            'e.g. video_dir/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi')
  if not root.is_dir():
    state = 'is not a folder' if root.exists() else 'does not exist'
    raise ValueError(f'video_dir={str(root)!r} {state}; {layout}. '
                     'Pass an existing folder (flag --video_dir).')
  children = sorted(root.iterdir())
  hidden = [p for p in children if p.name.startswith('.') and p.is_dir()]
  children = [p for p in children if not p.name.startswith('.')]
  class_dirs = [p for p in children if p.is_dir()]
  skipped = [(p.name, NOT_IN_CLASS_FOLDER) for p in children if not p.is_dir()]
  skipped += [(f'{p.name}/', HIDDEN_FOLDER) for p in hidden]
  if not class_dirs:
    ignored = (f' (hidden folders are skipped: '
               f'{", ".join(p.name for p in hidden)})' if hidden else '')
    raise ValueError(f'video_dir={str(root)!r} has no class subfolders'
                     f'{ignored}; {layout}.')
  entries = []
  for class_dir in class_dirs:
    found = _list_class_folder(class_dir, extensions, skipped)
    if not found:
      skipped.append((f'{class_dir.name}/', EMPTY_CLASS_FOLDER))
    entries.extend(found)
  if not entries:
    raise ValueError(
        f'video_dir={str(root)!r} has class folders but no videos with an '
        f'extension in {extensions}; {layout}. Add videos, or pass their '
        'extension in `extensions`.')
  listing = Listing(sorted(entries, key=entry_sort_key), sorted(skipped))
  logging.info('Listed %d videos in %d classes under %s (%d skipped)',
               len(listing.entries), len(listing.labels), root,
               len(listing.skipped))
  return listing


def list_ucf101(url: str = DEFAULT_UCF101_URL,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> Listing:
  """Lists the videos of a UCF101-style zip over HTTP Range requests.

  Reads only the zip's central directory (about 1 MB for UCF101's 6.5 GB).
  See `ucf101_listing` for how members are labelled and what is skipped.

  Args:
    url: `http(s)://` URL of a zip of UCF101-named videos, e.g.
      `UCF101/v_ApplyEyeMakeup_g01_c01.avi`; the server must answer Range
      requests.
    timeout_s: Seconds to wait to connect and for each read.

  Returns:
    A `Listing`; entry names are the zip member names, the label is the
    class in the file name.

  Raises:
    ValueError: `url` is not http(s), or a member name is absolute or holds a
      '..' component (the whole archive is refused).
    RemoteArchiveError: The URL is unreachable, answers an HTTP error or no
      Range support, or is not a zip.
  """
  with Ucf101Archive(url, timeout_s) as archive:
    return archive.listing()


class Ucf101Archive:
  """A zip read over HTTP Range requests; a context manager.

  Opening reads the central directory once and refuses the archive if any
  member name is unsafe. Not thread-safe: use one instance per thread.

  Args:
    url: As in `list_ucf101`.
    timeout_s: As in `list_ucf101`.
  """

  def __init__(self, url: str = DEFAULT_UCF101_URL,
               timeout_s: float = DEFAULT_TIMEOUT_S):
    if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
      raise ValueError(f'url={url!r} is not supported; expected a URL '
                       f'starting with {" or ".join(URL_SCHEMES)}, e.g. '
                       f'{DEFAULT_UCF101_URL!r} (flag --ucf101_url).')
    self.url = url
    self._session = requests.Session()
    try:
      with _remote_errors(url, 'open'):
        self._zip = remotezip.RemoteZip(url, session=self._session,
                                        timeout=timeout_s)
      for name in self._zip.namelist():
        _check_member_name(url, name)
    except BaseException:
      self.close()
      raise

  def __enter__(self) -> 'Ucf101Archive':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Releases the connection; the archive cannot be used afterwards."""
    zip_file = getattr(self, '_zip', None)
    if zip_file is not None:
      zip_file.close()
      self._zip = None
    self._session.close()

  def listing(self) -> Listing:
    """Video members as a `Listing`; see `list_ucf101`."""
    listing = ucf101_listing(self._zip.namelist())
    logging.info('Listed %d videos in %d classes in %s (%d skipped)',
                 len(listing.entries), len(listing.labels), self.url,
                 len(listing.skipped))
    return listing

  def fetch(self, name: str, destination_path: str | os.PathLike) -> str:
    """Writes member `name` to `destination_path` atomically.

    Args:
      name: A member name, e.g. `VideoEntry.name` from `listing`.
      destination_path: The file to write; parent folders are created. It is
        written whole or not at all.

    Returns:
      `destination_path` as a string.

    Raises:
      ValueError: `name` is not a file in the archive.
      RemoteArchiveError: the member's bytes are corrupt (bad CRC), or the
        server failed.
    """
    _check_member_name(self.url, name)
    try:
      info = self._zip.getinfo(name)
    except KeyError:
      info = None
    if info is None or info.is_dir():
      raise ValueError(
          f'name={name!r} is not a file in the archive {self.url}; pass a '
          'VideoEntry.name from list_ucf101().')
    destination = os.fspath(destination_path)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    with files.replacing(destination, suffix='.part') as part, open(
        part, 'wb') as out:
      self._copy_member(info, out)
    logging.debug('Fetched %s (%d bytes) from %s', name, info.file_size,
                  self.url)
    return destination

  def _copy_member(self, info: zipfile.ZipInfo, out) -> None:
    """Streams one member into the file object `out`."""
    action = f'fetch {info.filename!r} from'
    with _remote_errors(self.url, action):
      member = self._zip.open(info)
    with member:
      while True:
        with _remote_errors(self.url, action):
          chunk = member.read(_CHUNK_BYTES)
        if not chunk:
          return
        out.write(chunk)


def ucf101_listing(member_names: Iterable[str]) -> Listing:
  """Labels UCF101 zip members by the class in their file names.

  A video's class and group come from its file name,
  `v_<Class>_g<NN>_c<NN>.<ext>`, whatever folders hold it. A folder that
  names a class of the archive must name the member's own class, compared
  case-insensitively: UCF101 itself keeps `v_HandStandPushups_*.avi` in
  `HandstandPushups/`. Other folders (`UCF101/`, `UCF-101/`) are containers.
  Directory entries, dot files and `__MACOSX/` are ignored.

  Args:
    member_names: The zip's member names, directories ending in '/'.

  Returns:
    A `Listing`. Skipped, with their reason: members without a video
    extension (`NOT_A_VIDEO`), videos whose name does not follow the pattern
    (`NOT_UCF101_NAME`), and videos in the folder of another class
    (`FOLDER_OF_ANOTHER_CLASS`).
  """
  named, skipped = [], []
  for name in member_names:
    parts = name.split('/')
    if name.endswith('/') or any(_is_hidden(part) for part in parts):
      continue
    if not is_video_name(parts[-1]):
      skipped.append((name, NOT_A_VIDEO))
    elif (match := _UCF101_NAME.fullmatch(parts[-1])) is None:
      skipped.append((name, NOT_UCF101_NAME))
    else:
      named.append((name, parts[:-1], match))
  classes = {match['cls'].casefold() for _, _, match in named}
  entries = []
  for name, folders, match in named:
    label = match['cls']
    other_classes = classes - {label.casefold()}
    if any(folder.casefold() in other_classes for folder in folders):
      skipped.append((name, FOLDER_OF_ANOTHER_CLASS))
    else:
      entries.append(VideoEntry(name, label, match['group']))
  return Listing(sorted(entries, key=entry_sort_key), sorted(skipped))


def entry_sort_key(entry: VideoEntry) -> tuple[str, str]:
  """The order of every listing and split: by class, then by name."""
  return entry.label, entry.name


def _is_hidden(part: str) -> bool:
  """Dot files and macOS' `__MACOSX` resource-fork folder."""
  return part.startswith('.') or part == '__MACOSX'


def _list_class_folder(class_dir: pathlib.Path, extensions: tuple[str, ...],
                       skipped: list[tuple[str, str]]) -> list[VideoEntry]:
  """Videos directly inside `class_dir`; appends the rest to `skipped`."""
  label = class_dir.name
  entries = []
  for path in sorted(class_dir.iterdir()):
    name = f'{label}/{path.name}'
    if path.name.startswith('.'):
      continue
    if path.is_dir():
      skipped.append((f'{name}/', NESTED_FOLDER))
    elif not is_video_name(path.name, extensions):
      skipped.append((name, NOT_A_VIDEO))
    else:
      entries.append(VideoEntry(name, label, parse_group(path.name)))
  return entries


def _check_member_name(url: str, name: str) -> None:
  """Refuses absolute member names and names with a '..' component."""
  parts = re.split(r'[/\\]', name)
  if name.startswith(('/', '\\')) or re.match(r'[A-Za-z]:', name):
    problem = 'is an absolute path'
  elif '..' in parts:
    problem = "has a '..' component"
  else:
    return
  raise ValueError(
      f'Refusing the archive {url}: member {name!r} {problem}. Only relative '
      'member names such as "UCF101/v_<Class>_g01_c01.avi" are accepted; '
      'nothing was fetched. Use a trusted archive (flag --ucf101_url).')


@contextlib.contextmanager
def _remote_errors(url: str, action: str):
  """Turns what a remote zip can raise into a `RemoteArchiveError`."""
  advice = ('Check the URL (flag --ucf101_url) and network access; the '
            'server must answer HTTP Range requests.')
  try:
    yield
  except RemoteArchiveError:
    raise
  except remotezip.RangeNotSupported as e:
    raise RemoteArchiveError(
        f'Could not {action} the zip at {url}: the server does not answer '
        f'Range requests. {advice}') from e
  except zipfile.BadZipFile as e:
    raise RemoteArchiveError(
        f'Could not {action} the zip at {url}: not a valid zip, or a '
        f'corrupt member ({e}). {advice}') from e
  except (remotezip.RemoteZipError, requests.RequestException, OSError,
          EOFError) as e:
    raise RemoteArchiveError(
        f'Could not {action} the zip at {url}: {type(e).__name__}: {e}. '
        f'{advice}') from e
