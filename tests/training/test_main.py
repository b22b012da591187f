"""movinet-train end to end, in subprocesses, on tiny synthetic data."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tests.training import run_helpers as runs
from trainer.training.preemption import EXIT_INTERRUPTED

pytestmark = pytest.mark.slow(minutes=3.5)  # the module, on 2 cores
XDIST_GROUP = 'reference_run'  # with test_bad_input.py

TOLERANCE = 1e-5


@pytest.fixture
def reference(reference_run):
  """An uninterrupted deterministic train_and_eval run."""
  return reference_run


def _wait_for(path, process, timeout=300):
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    assert process.poll() is None, process.stdout.read()[-3000:]
    assert time.monotonic() < deadline, f'{path} never appeared'
    time.sleep(0.05)


def _tags(directory):
  accumulator = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return accumulator


def test_train_and_eval_writes_every_output(reference):
  for name in ('run.json', 'operative_config.gin', 'best_model.keras',
               'final_model.keras', 'eval/metrics.json',
               'eval/confusion_matrix.png'):
    assert os.path.isfile(reference / name), name
  checkpoints = [n for n in os.listdir(reference / 'checkpoints')
                 if n.endswith('.index')]
  assert len(checkpoints) == 3  # keep_checkpoints
  assert 'ckpt-16.index' in checkpoints  # 2 epochs of 8 steps

  metrics = json.loads((reference / 'eval/metrics.json').read_text())
  assert metrics['num_clips'] == 16
  assert set(metrics['per_class_accuracy']) == {
      'moving_down', 'moving_left', 'moving_right', 'moving_up'}
  for key in ('top1', 'top5', 'mean_class_accuracy'):
    assert 0.0 <= metrics[key] <= 1.0
  assert np.sum(metrics['confusion_matrix']) == 16
  assert "build_inputs.batch_size = 4" in (
      reference / 'operative_config.gin').read_text()

  train = _tags(reference / 'train')
  for tag in ('loss', 'accuracy', 'top5_accuracy', 'learning_rate',
              'epoch_loss', 'epoch_accuracy', 'operative_config'):
    assert tag in train.Tags()['tensors'], tag
  assert [e.step for e in train.Tensors('loss')] == list(range(2, 17, 2))
  assert [e.step for e in train.Tensors('epoch_loss')] == [8, 16]
  assert train.PluginTagToContent('hparams')  # the HParams session
  validation = _tags(reference / 'validation')
  assert [e.step for e in validation.Tensors('epoch_accuracy')] == [8, 16]
  evaluation = _tags(reference / 'eval')
  assert 'confusion_matrix' in evaluation.PluginTagToContent('images')
  top1 = evaluation.Tensors('top1')[0]
  assert top1.step == 16
  assert float(np.asarray(
      tensor_util.make_ndarray(top1.tensor_proto))) == (
          pytest.approx(metrics['top1']))

  model = keras.saving.load_model(reference / 'final_model.keras')
  logits = model.predict(np.zeros((1, 4, 32, 32, 3), np.float32), verbose=0)
  assert logits.shape == (1, 4)


_LOAD_ALONE = r'''
import json, sys
import keras
import numpy as np
import trainer.model
model = keras.saving.load_model(sys.argv[1])
logits = model.predict(np.zeros((1, 4, 32, 32, 3), np.float32), verbose=0)
print(json.dumps({'shape': list(logits.shape),
                  'loaded': sorted(m for m in sys.modules
                                   if m.startswith('trainer.'))}))
'''


def test_the_final_model_loads_with_trainer_model_alone(reference, env):
  # A fresh process, as a user's inference script: nothing of the trainer
  # but `trainer.model` (which registers the layers and the loss).
  result = subprocess.run(
      [sys.executable, '-c', _LOAD_ALONE, str(reference / 'final_model.keras')],
      env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = json.loads(result.stdout.strip().splitlines()[-1])
  assert loaded['shape'] == [1, 4]
  assert loaded['loaded'] and all(
      m.startswith('trainer.model') or m in ('trainer.files',)
      for m in loaded['loaded']), loaded['loaded']


def _checkpoint_steps(model_dir):
  return [int(name[len('ckpt-'):-len('.index')])
          for name in os.listdir(model_dir / 'checkpoints')
          if name.startswith('ckpt-') and name.endswith('.index')]


def test_ctrl_c_then_sigkill_then_resume_ends_equal(reference, data_dir, env,
                                                    tmp_path):
  """Interrupted, then killed at a random step: the third run ends as the
  uninterrupted one did. One chain instead of two runs to the end: each
  start of movinet-train costs ~25 s of CPU in this suite. (SIGTERM, which
  stops the same way with exit status 75, is sent to real workers in
  test_distribution.py.)"""
  model_dir = tmp_path / 'run'
  bindings = runs.tiny_bindings(data_dir)

  # Ctrl-C (SIGINT): a checkpoint of the step it stopped at, exit 130.
  process = runs.start(model_dir, bindings, env=env)
  _wait_for(model_dir / 'checkpoints/ckpt-3.index', process)
  process.send_signal(signal.SIGINT)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == EXIT_INTERRUPTED, output[-3000:]
  assert 'Traceback' not in output and 'KeyboardInterrupt' not in output
  stopped_at = int(re.search(r'Stopped by SIGINT at global step (\d+) '
                             r'\(checkpoint saved\); rerun the same command',
                             output).group(1))
  assert stopped_at in _checkpoint_steps(model_dir)

  # The rerun resumes there; SIGKILL at a random moment after its first
  # checkpoint, wherever that falls (in a step, a save, validation).
  seed = random.randrange(10**6)
  delay = random.Random(seed).uniform(0.0, 2.0)
  process = runs.start(model_dir, bindings, env=env)
  deadline = time.monotonic() + 300
  while max(_checkpoint_steps(model_dir)) <= stopped_at:
    assert process.poll() is None, process.stdout.read()[-3000:]
    assert time.monotonic() < deadline, 'no checkpoint after the resume'
    time.sleep(0.05)
  time.sleep(delay)
  process.kill()
  output, _ = process.communicate()
  assert process.returncode == -signal.SIGKILL, f'finished first (seed {seed})'
  assert f'(global step {stopped_at})' in output  # "Resuming at ..."

  result = runs.train(model_dir, bindings, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resuming at epoch' in result.stderr
  difference = runs.max_difference(runs.final_variables(reference),
                                   runs.final_variables(model_dir))
  assert difference <= TOLERANCE, f'seed {seed}, delay {delay:.2f} s'


def test_a_rerun_of_a_finished_run_restores_the_final_model_and_evaluates(
    reference, data_dir, env, tmp_path):
  # E.g. preempted after the last checkpoint but before the final save and
  # the evaluation: the rerun trains nothing, saves the final model from the
  # newest checkpoint and evaluates it as the uninterrupted run did. (The
  # same restore serves --mode=eval, run on ram:// in test_remote_paths.py.)
  model_dir = tmp_path / 'run'
  shutil.copytree(reference, model_dir)
  (model_dir / 'final_model.keras').unlink()
  before = json.loads((model_dir / 'eval/metrics.json').read_text())
  os.remove(model_dir / 'eval/metrics.json')
  checkpoints = runs.snapshot(model_dir / 'checkpoints')
  result = runs.train(model_dir, runs.tiny_bindings(data_dir), env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'is trained already' in result.stderr
  assert runs.snapshot(model_dir / 'checkpoints') == checkpoints
  assert json.loads((model_dir / 'eval/metrics.json').read_text()) == before
  restored = keras.saving.load_model(model_dir / 'final_model.keras')
  original = keras.saving.load_model(reference / 'final_model.keras')
  for mine, theirs in zip(restored.weights, original.weights):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
