"""Bad input: one clear error line, exit status 1, model_dir untouched."""

import shutil

import pytest
import tensorflow as tf

from tests.training import run_helpers as runs


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir, env):
  """A model_dir after one short training run (one epoch, no eval)."""
  model_dir = tmp_path_factory.mktemp('trained')
  result = runs.train(model_dir, runs.tiny_bindings(data_dir, **{
      'run.epochs': 1, 'run.validate': False}), '--mode=train', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def _fails_with(result, *phrases):
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('movinet-train: error: '), result.stderr[-3000:]
  for phrase in phrases:
    assert phrase in last, last
  return last


def _mismatching_checkpoint(directory) -> str:
  """A checkpoint of some other network."""
  checkpoint = tf.train.Checkpoint(dense=tf.Variable(tf.zeros([3, 3])))
  return checkpoint.write(str(directory / 'other' / 'ckpt'))


@pytest.mark.parametrize('case', [
    'unknown_configurable', 'unknown_parameter', 'missing_data_dir',
    'unprepared_data_dir', 'unknown_model_id', 'bad_batch_size',
    'pretrained_mismatch'])
def test_bad_bindings_are_named(case, trained, data_dir, env, tmp_path):
  bindings = runs.tiny_bindings(data_dir)
  empty = tmp_path / 'empty'
  empty.mkdir()
  phrases = {
      'unknown_configurable': (["build_modle.model_id = 'a1'"],
                               ('build_modle',)),
      'unknown_parameter': (['build_model.model_idd = 3'], ('model_idd',)),
      'missing_data_dir': ([f"build_inputs.data_dir = '{tmp_path}/none'"],
                           (f'{tmp_path}/none', 'movinet-prepare')),
      'unprepared_data_dir': ([f"build_inputs.data_dir = '{empty}'"],
                              ('No manifest', 'movinet-prepare')),
      'unknown_model_id': (["build_model.model_id = 'a9'"],
                           ("build_model.model_id='a9'", 'a0')),
      'bad_batch_size': (['build_inputs.batch_size = 64'],
                         ('build_inputs.batch_size=64',)),
      'pretrained_mismatch': (
          [f"build_model.pretrained = '{_mismatching_checkpoint(tmp_path)}'"],
          ('build_model.pretrained=',)),
  }[case]
  extra, expected = phrases
  before = runs.snapshot(trained)
  result = runs.train(trained, bindings + extra, env=env)
  _fails_with(result, *expected)
  assert runs.snapshot(trained) == before


@pytest.mark.parametrize('flags, expected', [
    (['--strategy=gpu_cluster'], ("--strategy='gpu_cluster'", 'mirrored')),
    (['--strategy=tpu'], ('--strategy=tpu needs --tpu',)),
    (['--strategy=tpu', '--tpu=no-such-tpu-xyz'],
     ("Cannot reach the TPU --tpu='no-such-tpu-xyz'",)),
    (['--gin_file=no_such.gin'], ("--gin_file='no_such.gin'",)),
])
def test_bad_flags_are_named(flags, expected, trained, data_dir, env):
  before = runs.snapshot(trained)
  result = runs.train(trained, runs.tiny_bindings(data_dir), *flags, env=env)
  _fails_with(result, *expected)
  assert runs.snapshot(trained) == before


def test_unwritable_model_dir(data_dir, env, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = runs.train(blocker / 'run', runs.tiny_bindings(data_dir), env=env)
  _fails_with(result, 'is not writable', '--model_dir')
  assert blocker.read_text() == 'not a directory'


def test_eval_without_a_checkpoint(data_dir, env, tmp_path):
  result = runs.train(tmp_path / 'run', runs.tiny_bindings(data_dir),
                      '--mode=eval', env=env)
  _fails_with(result, '--mode=eval found no checkpoint')


@pytest.mark.parametrize('change, expected', [
    ('model_id', 'build_model.model_id'),
    ('classes', 'number of classes'),
    ('dataset', 'build_inputs.data_dir and build_inputs.train_split'),
])
def test_resuming_with_other_settings_is_refused(change, expected, trained,
                                                 data_dir, env,
                                                 tmp_path_factory):
  if change == 'model_id':
    bindings = runs.tiny_bindings(data_dir, **{'build_model.model_id': "'t0'"})
  elif change == 'classes':
    bindings = runs.tiny_bindings(runs.prepare_tiny(
        tmp_path_factory.mktemp('six'), num_classes=6))
  else:  # same classes, other clips
    bindings = runs.tiny_bindings(runs.prepare_tiny(
        tmp_path_factory.mktemp('other'), seed=1))
  before = runs.snapshot(trained)
  result = runs.train(trained, bindings, env=env)
  last = _fails_with(result, 'holds a run with other settings', expected,
                     'new --model_dir')
  assert runs.snapshot(trained) == before
  del last


def test_a_removed_run_file_is_not_needed_to_fail_safely(trained, data_dir,
                                                         env, tmp_path):
  # A checkpoint of another architecture (run.json lost): restoring fails
  # with a named error and the checkpoints stay as they were.
  model_dir = tmp_path / 'run'
  shutil.copytree(trained, model_dir)
  (model_dir / 'run.json').unlink()
  before = runs.snapshot(model_dir / 'checkpoints')
  result = runs.train(model_dir, runs.tiny_bindings(
      data_dir, **{'build_model.model_id': "'t0'"}), env=env)
  _fails_with(result, 'does not fit this model')
  assert runs.snapshot(model_dir / 'checkpoints') == before
