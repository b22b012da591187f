"""Which classes to keep and which videos go to which split.

Two ways to split a `Listing`'s entries:

  count   `split_by_counts`: per class, a seeded shuffle, then the first
          `counts['train']` videos to train, the next `counts['test']` to
          test, ... (the seed tutorial's "30 train / 20 test" recipe). Clips of
          the same UCF101 group (same actor, same scene) can land in both
          splits, which flatters test accuracy.
  group   `split_by_group`: the official UCF101 protocol; fold k tests on
          groups 7(k-1)+1 .. 7k and trains on all other groups, so no group
          is in both splits.

Every result is sorted by `(label, name)`, so the same inputs give the same
files in the same order on every machine.
"""

import collections
import random
import re
from typing import Iterable

from trainer.data.sources import VideoEntry, entry_sort_key

UCF101_FOLDS = (1, 2, 3)
GROUPS_PER_TEST_FOLD = 7

_SPLITS_EXAMPLE = 'e.g. --splits=train:30,test:20'
_SPLIT_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_-]*')


def select_classes(labels: Iterable[str],
                   num_classes: int | None) -> list[str]:
  """The first `num_classes` of the distinct `labels` in sorted order.

  As the TensorFlow MoViNet tutorial picks its classes (for UCF101:
  ApplyEyeMakeup, ApplyLipstick, Archery, ...).

  Args:
    labels: Class names; repeats are fine (e.g. one per video).
    num_classes: How many to keep; None keeps all.

  Returns:
    The chosen class names, sorted.

  Raises:
    ValueError: `labels` is empty or `num_classes` is not in
      `1..len(distinct labels)`.
  """
  distinct = sorted(set(labels))
  if not distinct:
    raise ValueError('labels is empty; list a source with videos first.')
  if num_classes is None:
    return distinct
  if (isinstance(num_classes, bool) or not isinstance(num_classes, int)
      or not 1 <= num_classes <= len(distinct)):
    raise ValueError(
        f'num_classes={num_classes!r} is not allowed; the source has '
        f'{len(distinct)} classes, so pass an integer from 1 to '
        f'{len(distinct)} (flag --num_classes), or leave it unset for all.')
  return distinct[:num_classes]


def filter_classes(entries: Iterable[VideoEntry],
                   classes: Iterable[str]) -> list[VideoEntry]:
  """The entries whose label is in `classes`, sorted by `(label, name)`."""
  keep = set(classes)
  return _sorted(entry for entry in entries if entry.label in keep)


def split_by_counts(entries: Iterable[VideoEntry], counts: dict[str, int],
                    seed: int = 0) -> dict[str, list[VideoEntry]]:
  """Takes `counts[split]` videos per class for each split, seeded.

  Each class is shuffled with its own generator, seeded by `(seed, label)`,
  after sorting by name: the input order does not matter, and adding or
  removing another class does not change this class's split. Videos beyond
  `sum(counts.values())` are left out.

  Args:
    entries: The videos, e.g. `Listing.entries` (after `filter_classes`).
    counts: Videos per class for each split, in the order they are taken,
      e.g. `{'train': 30, 'test': 20}` (see `parse_splits`).
    seed: The shuffle seed.

  Returns:
    `{split: entries}` with the keys of `counts`, each list sorted by
    `(label, name)`.

  Raises:
    ValueError: `entries` is empty, `counts` is malformed, or a class has
      fewer videos than `sum(counts.values())`.
  """
  _check_counts(counts)
  by_label = _by_label(entries)
  wanted = sum(counts.values())
  splits = {split: [] for split in counts}
  for label, videos in sorted(by_label.items()):
    if len(videos) < wanted:
      raise ValueError(
          f'Class {label!r} has {len(videos)} videos but the splits ask for '
          f'{wanted} per class ({_format_counts(counts)}); lower the counts '
          f'in --splits, or drop the class (--num_classes).')
    random.Random(f'{seed}/{label}').shuffle(videos)
    start = 0
    for split, count in counts.items():
      splits[split].extend(videos[start:start + count])
      start += count
  return {split: _sorted(videos) for split, videos in splits.items()}


def split_by_group(entries: Iterable[VideoEntry],
                   fold: int) -> dict[str, list[VideoEntry]]:
  """The official UCF101 train/test split `fold` (1, 2 or 3).

  Fold 1 tests on groups g01-g07, fold 2 on g08-g14, fold 3 on g15-g21; all
  other groups (g22-g25 always) are train, as in the official
  `testlist0k.txt`/`trainlist0k.txt`.

  Args:
    entries: Videos with `group` set (UCF101 names `v_<Class>_gNN_cNN.avi`).
    fold: 1, 2 or 3.

  Returns:
    `{'train': entries, 'test': entries}`, each sorted by `(label, name)`.

  Raises:
    ValueError: `fold` is not 1, 2 or 3, `entries` is empty, or an entry has
      no UCF101 group.
  """
  if isinstance(fold, bool) or fold not in UCF101_FOLDS:
    raise ValueError(f'fold={fold!r} is not allowed; UCF101 has folds '
                     f'{UCF101_FOLDS} (flag --fold).')
  first = GROUPS_PER_TEST_FOLD * (fold - 1) + 1
  test_groups = range(first, first + GROUPS_PER_TEST_FOLD)
  splits = {'train': [], 'test': []}
  for videos in _by_label(entries).values():
    for entry in videos:
      split = 'test' if group_number(entry) in test_groups else 'train'
      splits[split].append(entry)
  return {split: _sorted(videos) for split, videos in splits.items()}


def group_number(entry: VideoEntry) -> int:
  """`VideoEntry(group='g08')` -> 8.

  Raises:
    ValueError: The entry has no UCF101 group.
  """
  match = re.fullmatch(r'g(\d+)', entry.group or '')
  if match is None:
    raise ValueError(
        f'Video {entry.name!r} has group={entry.group!r}, not a UCF101 group '
        'like "g08": its name does not follow v_<Class>_g<NN>_c<NN>.<ext>, '
        'so the official split cannot place it. Use --split_by=count.')
  return int(match.group(1))


def parse_splits(text: str) -> dict[str, int]:
  """`'train:30,test:20'` -> `{'train': 30, 'test': 20}` (order kept).

  Raises:
    ValueError: Empty text, an item not `name:count`, a name that is not an
      identifier, a count that is not a positive integer, or a repeated name.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f'splits={text!r} is empty; pass name:count pairs '
                     f'separated by commas, {_SPLITS_EXAMPLE}.')
  counts = {}
  for item in text.split(','):
    name, colon, count = (part.strip() for part in item.partition(':'))
    problem = None
    if not colon:
      problem = f'item {item.strip()!r} is not name:count'
    elif not _SPLIT_NAME.fullmatch(name):
      problem = (f'split name {name!r} is not a name of letters, digits, '
                 "'_' or '-'")
    elif not count.isdigit() or int(count) < 1:
      problem = f'count {count!r} for {name!r} is not a positive integer'
    elif name in counts:
      problem = f'split {name!r} appears twice'
    if problem:
      raise ValueError(f'splits={text!r}: {problem}; {_SPLITS_EXAMPLE}.')
    counts[name] = int(count)
  return counts


def _check_counts(counts: dict[str, int]) -> None:
  if not isinstance(counts, dict) or not counts or any(
      not isinstance(c, int) or isinstance(c, bool) or c < 1
      for c in counts.values()):
    raise ValueError(f'counts={counts!r} is not allowed; pass a dict of '
                     f'split name to a positive count, {_SPLITS_EXAMPLE}.')


def _by_label(entries: Iterable[VideoEntry]) -> dict[str, list[VideoEntry]]:
  """Entries grouped by label, each group sorted by name; never empty."""
  by_label = collections.defaultdict(list)
  for entry in entries:
    by_label[entry.label].append(entry)
  if not by_label:
    raise ValueError('entries is empty; list a source with videos first '
                     '(flag --video_dir or --ucf101_url).')
  return {label: sorted(videos, key=lambda e: e.name)
          for label, videos in by_label.items()}


def _format_counts(counts: dict[str, int]) -> str:
  return ','.join(f'{split}:{count}' for split, count in counts.items())


def _sorted(entries: Iterable[VideoEntry]) -> list[VideoEntry]:
  return sorted(entries, key=entry_sort_key)

