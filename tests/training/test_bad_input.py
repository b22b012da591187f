"""Bad input: one clear error line, exit status 1, model_dir untouched.

Every case but one runs `trainer.main.main` in one shared process
(`many_main.py`), as the console script would run it; the unwritable
model_dir runs the real command in a process of its own.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.training import run_helpers as runs

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

pytestmark = pytest.mark.slow(minutes=1.5)  # the module, on 2 cores
XDIST_GROUP = 'reference_run'  # with test_main.py


@pytest.fixture(scope='module')
def trained(reference_run):
  """A model_dir after a short training run (see `reference_run`)."""
  return reference_run


def _check(code, last_line, *phrases):
  """Exit status 1 and one `movinet-train: error:` line holding `phrases`."""
  assert code == 1, last_line
  assert last_line.startswith('movinet-train: error: '), last_line
  for phrase in phrases:
    assert phrase in last_line, last_line


def _mismatching_checkpoint(directory) -> str:
  """A checkpoint of some other network."""
  checkpoint = tf.train.Checkpoint(dense=tf.Variable(tf.zeros([3, 3])))
  return checkpoint.write(str(directory / 'other' / 'ckpt'))



# name -> (extra bindings, extra flags, phrases the error line must hold)
_BAD_BINDINGS = {
    'unknown_configurable': (["build_modle.model_id = 'a1'"], [],
                             ['build_modle']),
    'unknown_parameter': (['build_model.model_idd = 3'], [], ['model_idd']),
    'missing_data_dir': (["build_inputs.data_dir = '{tmp}/none'"], [],
                         ['{tmp}/none', 'movinet-prepare']),
    'unprepared_data_dir': (["build_inputs.data_dir = '{tmp}/empty'"], [],
                            ['No manifest', 'movinet-prepare']),
    'unknown_model_id': (["build_model.model_id = 'a9'"], [],
                         ["build_model.model_id='a9'", 'a0']),
    'bad_batch_size': (['build_inputs.batch_size = 64'], [],
                       ['build_inputs.batch_size=64']),
    'bad_train_resize': (["build_inputs.train_resize = 'stretch'"], [],
                         ["build_inputs.train_resize='stretch'", 'pad']),
    'pretrained_mismatch': (["build_model.pretrained = '{mismatch}'"], [],
                            ['build_model.pretrained=']),
    'unknown_strategy': ([], ['--strategy=gpu_cluster'],
                         ["--strategy='gpu_cluster'", 'mirrored']),
    'tpu_without_name': ([], ['--strategy=tpu'],
                         ['--strategy=tpu needs --tpu']),
    'unreachable_tpu': ([], ['--strategy=tpu', '--tpu=no-such-tpu-xyz'],
                        ["Cannot reach the TPU --tpu='no-such-tpu-xyz'"]),
    'missing_gin_file': ([], ['--gin_file=no_such.gin'],
                         ["--gin_file='no_such.gin'"]),
    # A wrong type, or a value that only looks like another problem.
    'batch_size_text': (["build_inputs.batch_size = 'four'"], [],
                        ["build_inputs.batch_size='four' must be an int"]),
    'batch_size_fraction': (['build_inputs.batch_size = 4.5'], [],
                            ['build_inputs.batch_size=4.5 must be an int']),
    'epochs_text': (["run.epochs = '1'"], [],
                    ["run.epochs='1' must be an int"]),
    # Refused up front, not out of memory minutes later.
    'clips_beyond_memory': (['build_inputs.num_frames = 100000',
                             'build_inputs.image_size = 172'], [],
                            ['build_inputs.num_frames=100000',
                             '100000 frames', 'GiB of memory']),
}
# What differs from the trained run -> what the error names.
_OTHER_SETTINGS = {
    'model_id': 'build_model.model_id',
    'classes': 'number of classes',
    'dataset': 'build_inputs.data_dir and build_inputs.train_split',
}


def _argv(model_dir, bindings, *flags):
  return ([f'--model_dir={model_dir}']
          + [f'--gin_bindings={binding}' for binding in bindings]
          + list(flags))


@pytest.fixture(scope='module')
def outcomes(trained, data_dir, env, tmp_path_factory):
  """`{case: {'code', 'last_line', 'changed'}}` of every bad command line."""
  tmp = tmp_path_factory.mktemp('bad')
  (tmp / 'empty').mkdir()
  fill = {'tmp': str(tmp), 'mismatch': _mismatching_checkpoint(tmp)}
  cases = {}
  for name, (bindings, flags, _) in _BAD_BINDINGS.items():
    bindings = [b.format(**fill) for b in bindings]
    cases[name] = (_argv(trained, runs.tiny_bindings(data_dir) + bindings,
                         *flags), trained)
  other_data = {
      'model_id': data_dir,
      'classes': runs.prepare_tiny(tmp / 'six', num_classes=6),
      'dataset': runs.prepare_tiny(tmp / 'other_data', seed=1)}
  for change, other in other_data.items():
    overrides = ({'build_model.model_id': "'t0'"} if change == 'model_id'
                 else {})
    cases[f'other_{change}'] = (
        _argv(trained, runs.tiny_bindings(other, **overrides)), trained)
  (tmp / 'eval').mkdir()
  cases['eval_without_checkpoint'] = (
      _argv(tmp / 'eval' / 'run', runs.tiny_bindings(data_dir),
            '--mode=eval'), tmp / 'eval')
  # run.json lost: the checkpoints' own record of the run is checked.
  no_run_file = tmp / 'no_run_file'
  shutil.copytree(trained, no_run_file)
  (no_run_file / 'run.json').unlink()
  cases['no_run_file'] = (
      _argv(no_run_file, runs.tiny_bindings(
          data_dir, **{'build_model.model_id': "'t0'"})),
      no_run_file)
  cases['no_run_file_other_data'] = (
      _argv(no_run_file, runs.tiny_bindings(
          other_data['dataset'], **{'build_inputs.batch_size': 8})),
      no_run_file)
  payload = [{'argv': argv, 'watch': str(watch)}
             for argv, watch in cases.values()]
  result = subprocess.run(
      [sys.executable, '-m', 'tests.training.many_main', json.dumps(payload)],
      cwd=_REPO, env=env, capture_output=True, text=True, timeout=900,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  outcomes = dict(zip(cases,
                      json.loads(result.stdout.strip().splitlines()[-1])))
  for name, (_, _, phrases) in _BAD_BINDINGS.items():
    outcomes[name]['phrases'] = [p.format(**fill) for p in phrases]
  return outcomes


def _check_outcome(outcome, *phrases):
  _check(outcome['code'], outcome['last_line'], *phrases)
  assert not outcome['changed'], 'the watched folder changed'


@pytest.mark.parametrize('case', _BAD_BINDINGS)
def test_bad_bindings_and_flags_are_named(case, outcomes):
  _check_outcome(outcomes[case], *outcomes[case]['phrases'])


def test_eval_without_a_checkpoint(outcomes):
  _check_outcome(outcomes['eval_without_checkpoint'],
                 '--mode=eval found no checkpoint')


@pytest.mark.parametrize('change', _OTHER_SETTINGS)
def test_resuming_with_other_settings_is_refused(change, outcomes):
  _check_outcome(outcomes[f'other_{change}'],
                 'holds a run with other settings', _OTHER_SETTINGS[change],
                 'new --model_dir')


@pytest.mark.parametrize('case, phrases', [
    ('no_run_file', ['holds a run with other settings',
                     "build_model.model_id: 'a0' before, now 't0'"]),
    ('no_run_file_other_data', [
        'holds a run with other settings',
        'build_inputs.data_dir and build_inputs.train_split',
        'build_inputs.batch_size (the global batch): 4 before, now 8']),
])
def test_a_removed_run_file_is_checked_against_the_checkpoint(case, phrases,
                                                              outcomes):
  _check_outcome(outcomes[case], *phrases)


def test_unwritable_model_dir(data_dir, env, tmp_path):
  # The real command in its own process: exit status and stderr as a shell
  # sees them.
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = runs.train(blocker / 'run', runs.tiny_bindings(data_dir), env=env)
  last_line = result.stderr.strip().splitlines()[-1]
  _check(result.returncode, last_line, 'is not writable', '--model_dir')
  assert blocker.read_text() == 'not a directory'
