"""`model_dir/run.json`: what a run was trained on, read, checked, written."""

import dataclasses
import os

import pytest

from trainer.training import run_identity

IDENTITY = run_identity.RunIdentity(
    model_id='a0',
    stream=False,
    label_names=('jump', 'run', 'walk'),
    num_classes=3,
    dataset='sha256:0123abcd',
    batch_size=8,
    shuffle_buffer=64,
    seed=1234,
)

# (key, a different value, the binding the message must name).
CHANGES = [
    ('model_id', 'a1', 'build_model.model_id'),
    ('stream', True, 'build_model.stream'),
    ('label_names', ('jump', 'walk'), 'the classes of build_inputs.data_dir'),
    ('num_classes', 2, 'build_inputs.data_dir (its number of classes)'),
    ('dataset', 'sha256:ffff',
     'build_inputs.data_dir and build_inputs.train_split'),
    ('batch_size', 16, 'build_inputs.batch_size (the global batch)'),
    ('shuffle_buffer', 0, 'build_inputs.shuffle_buffer'),
    ('seed', 99, 'run.seed'),
]


def _leftovers(directory) -> list[str]:
  return sorted(name for name in os.listdir(directory) if '.tmp-' in name)


def test_missing_file_reads_as_none(tmp_path):
  assert run_identity.read(str(tmp_path)) is None


def test_write_then_read_round_trips(tmp_path):
  run_identity.write(str(tmp_path), IDENTITY)
  assert run_identity.read(str(tmp_path)) == IDENTITY
  assert os.listdir(tmp_path) == [run_identity.RUN_FILE]


def test_written_file_is_sorted_indented_json(tmp_path):
  run_identity.write(str(tmp_path),
                     run_identity.RunIdentity(seed=1, batch_size=2))
  text = (tmp_path / run_identity.RUN_FILE).read_text()
  assert text == '{\n  "batch_size": 2,\n  "seed": 1\n}'


def test_write_replaces_a_previous_file(tmp_path):
  run_identity.write(str(tmp_path), IDENTITY)
  run_identity.write(str(tmp_path), dataclasses.replace(IDENTITY, seed=7))
  assert run_identity.read(str(tmp_path)).seed == 7
  assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
  run_identity.write(str(tmp_path), IDENTITY)
  with pytest.raises(TypeError):
    run_identity.write(str(tmp_path),
                       dataclasses.replace(IDENTITY, seed=object()))
  assert run_identity.read(str(tmp_path)) == IDENTITY
  assert _leftovers(tmp_path) == []


def test_write_into_a_missing_directory_leaves_nothing(tmp_path):
  missing = tmp_path / 'missing'
  with pytest.raises(FileNotFoundError):
    run_identity.write(str(missing), IDENTITY)
  assert not missing.exists()
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('contents', ['', '{"seed": 1', 'not json'])
def test_invalid_json_names_the_file(tmp_path, contents):
  path = tmp_path / run_identity.RUN_FILE
  path.write_text(contents)
  with pytest.raises(run_identity.RunMismatchError) as error:
    run_identity.read(str(tmp_path))
  assert str(error.value).startswith(f'{path} is not valid JSON (')
  assert 'use a new --model_dir' in str(error.value)
  assert isinstance(error.value, ValueError)


def test_check_passes_without_a_recorded_run(tmp_path):
  run_identity.check(str(tmp_path), IDENTITY, None)


def test_check_passes_for_the_same_settings(tmp_path):
  run_identity.write(str(tmp_path), IDENTITY)
  recorded = run_identity.read(str(tmp_path))
  run_identity.check(str(tmp_path), dataclasses.replace(IDENTITY), recorded)


def test_check_ignores_settings_the_record_lacks(tmp_path):
  # A run.json from before a setting was recorded still resumes.
  recorded = dataclasses.replace(IDENTITY, shuffle_buffer=None)
  run_identity.check(str(tmp_path),
                     dataclasses.replace(IDENTITY, shuffle_buffer=5), recorded)


def test_a_record_from_an_older_version_reads_with_its_keys(tmp_path):
  (tmp_path / run_identity.RUN_FILE).write_text(
      '{"batch_size": 4, "seed": 3, "retired_setting": 1}')
  assert run_identity.read(str(tmp_path)) == run_identity.RunIdentity(
      batch_size=4, seed=3)


@pytest.mark.parametrize('key, value, binding', CHANGES,
                         ids=[change[0] for change in CHANGES])
def test_check_names_the_differing_binding(tmp_path, key, value, binding):
  with pytest.raises(run_identity.RunMismatchError) as error:
    run_identity.check(str(tmp_path),
                       dataclasses.replace(IDENTITY, **{key: value}), IDENTITY)
  before, now = (list(v) if isinstance(v, tuple) else v
                 for v in (getattr(IDENTITY, key), value))
  assert str(error.value) == (
      f'--model_dir={tmp_path} holds a run with other settings; {binding}: '
      f'{before!r} before, now {now!r}. Change them back to resume, '
      'or use a new --model_dir.')


def test_check_names_every_difference(tmp_path):
  now = dataclasses.replace(IDENTITY, model_id='a2', batch_size=4, seed=5)
  with pytest.raises(run_identity.RunMismatchError) as error:
    run_identity.check(str(tmp_path), now, IDENTITY)
  message = str(error.value)
  assert "build_model.model_id: 'a0' before, now 'a2'" in message
  assert 'build_inputs.batch_size (the global batch): 8 before, now 4' in (
      message)
  assert 'run.seed: 1234 before, now 5' in message
  for unchanged in ('build_model.stream', 'build_inputs.shuffle_buffer',
                    'the classes of'):
    assert unchanged not in message


# run.json against the identity the newest checkpoint holds
# (checkpointing.read_identity).
def test_a_missing_run_file_is_replaced_by_the_checkpoints_record(tmp_path):
  assert run_identity.check_against_checkpoint(
      str(tmp_path), None, IDENTITY) == IDENTITY


@pytest.mark.parametrize('recorded, saved', [(None, None),
                                             (IDENTITY, None),
                                             (IDENTITY,
                                              dataclasses.replace(IDENTITY))])
def test_agreeing_or_absent_records_pass(tmp_path, recorded, saved):
  assert run_identity.check_against_checkpoint(
      str(tmp_path), recorded, saved) == recorded


def test_an_edited_run_file_is_refused_naming_what_differs(tmp_path):
  edited = dataclasses.replace(IDENTITY, batch_size=16, seed=1)
  with pytest.raises(run_identity.RunMismatchError,
                     match=r'run\.json differs from the run its newest '
                           r'checkpoint records \(in batch_size, seed\)'):
    run_identity.check_against_checkpoint(str(tmp_path), edited, IDENTITY)
