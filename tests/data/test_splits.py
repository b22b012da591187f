"""Tests for trainer.data.splits."""

import random

import pytest

from trainer.data import splits
from trainer.data.sources import VideoEntry

_CLASSES = ('Archery', 'Basketball', 'Café Noir', 'Diving')
_GROUPS = range(1, 26)  # UCF101 has g01..g25.


def _entry(label, group, clip):
  filename = f'v_{label}_g{group:02d}_c{clip:02d}.avi'
  return VideoEntry(f'{label}/{filename}', label, f'g{group:02d}')


def _ucf101_like(classes=_CLASSES, clips=2):
  """Every class has every group, `clips` clips each."""
  return [_entry(label, group, clip) for label in classes for group in _GROUPS
          for clip in range(1, clips + 1)]


def _names(entries):
  return [entry.name for entry in entries]


# select_classes


@pytest.mark.parametrize('num_classes,expected', [
    (None, ['Archery', 'Basketball', 'Café Noir', 'Diving']),
    (1, ['Archery']),
    (3, ['Archery', 'Basketball', 'Café Noir']),
])
def test_select_classes_takes_the_sorted_prefix(num_classes, expected):
  labels = ['Diving', 'Archery', 'Café Noir', 'Basketball', 'Archery']
  assert splits.select_classes(labels, num_classes) == expected


@pytest.mark.parametrize('num_classes', [0, -1, 5, 2.0, True])
def test_select_classes_rejects_bad_count(num_classes):
  with pytest.raises(ValueError, match=r'num_classes=.*1 to 4.*--num_classes'):
    splits.select_classes(_CLASSES, num_classes)


def test_select_classes_rejects_empty_labels():
  with pytest.raises(ValueError, match='labels is empty'):
    splits.select_classes([], 3)


def test_filter_classes_keeps_only_chosen_sorted():
  entries = _ucf101_like()
  kept = splits.filter_classes(reversed(entries), ['Diving', 'Archery'])
  assert {e.label for e in kept} == {'Archery', 'Diving'}
  assert kept == sorted(kept, key=lambda e: (e.label, e.name))
  assert len(kept) == 2 * len(_GROUPS) * 2


# split_by_counts


def test_split_by_counts_takes_counts_per_class_disjoint_sorted():
  counts = {'train': 30, 'val': 5, 'test': 10}
  result = splits.split_by_counts(_ucf101_like(), counts, seed=3)
  assert list(result) == ['train', 'val', 'test']
  seen = set()
  for split, videos in result.items():
    assert videos == sorted(videos, key=lambda e: (e.label, e.name))
    for label in _CLASSES:
      assert sum(e.label == label for e in videos) == counts[split]
    assert not seen & set(videos)
    seen |= set(videos)


def test_split_by_counts_is_seeded_and_ignores_input_order():
  entries = _ucf101_like()
  counts = {'train': 30, 'test': 20}
  first = splits.split_by_counts(entries, counts, seed=11)
  shuffled = list(entries)
  random.Random(0).shuffle(shuffled)
  assert splits.split_by_counts(shuffled, counts, seed=11) == first
  assert splits.split_by_counts(entries, counts, seed=12) != first
  # Not simply the first videos by name: the shuffle happened.
  assert _names(first['train']) != _names(
      splits.filter_classes(entries, _CLASSES))[:30]


def test_split_by_counts_class_split_independent_of_other_classes():
  counts = {'train': 4, 'test': 3}
  alone = splits.split_by_counts(_ucf101_like(['Archery']), counts, seed=5)
  together = splits.split_by_counts(_ucf101_like(), counts, seed=5)
  for split in counts:
    assert [e for e in together[split] if e.label == 'Archery'] == alone[split]


def test_split_by_counts_too_few_names_class_have_asked_and_flag():
  entries = _ucf101_like(clips=2) + [_entry('Tiny', 1, 1), _entry('Tiny', 2, 1)]
  with pytest.raises(ValueError) as error:
    splits.split_by_counts(entries, {'train': 2, 'test': 1}, seed=0)
  message = str(error.value)
  for part in ("'Tiny'", 'has 2 videos', 'ask for 3', '--splits'):
    assert part in message


@pytest.mark.parametrize('counts', [{}, {'train': 0}, {'train': -2},
                                    {'train': 1.5}, [('train', 3)]])
def test_split_by_counts_rejects_bad_counts(counts):
  with pytest.raises(ValueError, match='counts=.*--splits'):
    splits.split_by_counts(_ucf101_like(), counts, seed=0)


def test_split_by_counts_rejects_empty_entries():
  with pytest.raises(ValueError, match='entries is empty'):
    splits.split_by_counts([], {'train': 1}, seed=0)


# split_by_group


@pytest.mark.parametrize('fold,test_groups', [
    (1, set(range(1, 8))),
    (2, set(range(8, 15))),
    (3, set(range(15, 22))),
])
def test_split_by_group_follows_official_folds(fold, test_groups):
  entries = _ucf101_like()
  result = splits.split_by_group(reversed(entries), fold)
  assert list(result) == ['train', 'test']
  groups = {split: {(e.label, splits.group_number(e)) for e in videos}
            for split, videos in result.items()}
  assert not groups['train'] & groups['test']
  assert {g for _, g in groups['test']} == test_groups
  assert {g for _, g in groups['train']} == set(_GROUPS) - test_groups
  assert {g for _, g in groups['train']} >= {22, 23, 24, 25}
  assert sorted(result['train'] + result['test'],
                key=lambda e: e.name) == sorted(entries, key=lambda e: e.name)
  for videos in result.values():
    assert videos == sorted(videos, key=lambda e: (e.label, e.name))


def test_split_by_group_without_group_names_entry_and_count_split():
  entries = _ucf101_like() + [VideoEntry('Diving/my clip.mp4', 'Diving', None)]
  with pytest.raises(ValueError,
                     match=r"'Diving/my clip.mp4'.*--split_by=count"):
    splits.split_by_group(entries, 1)


@pytest.mark.parametrize('fold', [0, 4, '1', True, None])
def test_split_by_group_rejects_bad_fold(fold):
  with pytest.raises(ValueError, match=r'fold=.*\(1, 2, 3\).*--fold'):
    splits.split_by_group(_ucf101_like(), fold)


# parse_splits


@pytest.mark.parametrize('text,expected', [
    ('train:30,test:20', {'train': 30, 'test': 20}),
    (' train : 30 , test:20 ', {'train': 30, 'test': 20}),
    ('test:1,train:2,val-a:3', {'test': 1, 'train': 2, 'val-a': 3}),
    ('train:7', {'train': 7}),
])
def test_parse_splits_reads_pairs_in_order(text, expected):
  result = splits.parse_splits(text)
  assert result == expected
  assert list(result) == list(expected)


@pytest.mark.parametrize('text,problem', [
    ('', 'is empty'),
    ('   ', 'is empty'),
    ('train', "'train' is not name:count"),
    ('train:30,', "'' is not name:count"),
    ('train:30;test:20', "count '30;test:20' for 'train'"),
    (':30', "split name ''"),
    ('tr ain:3', "split name 'tr ain'"),
    ('train:abc', "count 'abc'"),
    ('train:0', "count '0'"),
    ('train:-5', "count '-5'"),
    ('train:2.5', "count '2.5'"),
    ('train:3,train:4', "'train' appears twice"),
])
def test_parse_splits_errors_name_problem_and_example(text, problem):
  with pytest.raises(ValueError) as error:
    splits.parse_splits(text)
  message = str(error.value)
  assert problem in message
  assert '--splits=train:30,test:20' in message
