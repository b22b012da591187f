"""movinet-train with a non-local model_dir and data directory.

TensorFlow's in-memory `ram://` filesystem stands in for `gs://`: every file
access must go through `tf.io.gfile` (or Keras' remote-path support), or it
fails or lands on the local disk. `ram://` lives in one process, so
`ram_main.py` runs the whole scenario (copy the data in, train 2 steps,
resume to 4, evaluate with --mode=eval) in one subprocess and lists what
the model_dir holds.
"""

import dataclasses
import json
import os
import subprocess
import sys
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training import ram_main
from tests.training import run_helpers as runs
from trainer import files
from trainer.training import evaluation
from trainer.training import run_identity

pytestmark = pytest.mark.slow(minutes=1.5)  # the module, on 2 cores


@pytest.fixture(scope='module')
def ram_run(tmp_path_factory, data_dir, env):
  """(name of the ram:// root, listing of its model_dir, stderr, local dirs
  the subprocess could have written to by mistake: its cwd and TMPDIR)."""
  name = f'movinet-{uuid.uuid4().hex[:12]}'
  root = f'ram://{name}'
  cwd = tmp_path_factory.mktemp('cwd')
  temporary = tmp_path_factory.mktemp('tmp')
  bindings = runs.tiny_bindings(f'{root}/data', **{
      'build_optimizer.name': "'sgd'",  # the optimizer is not the point here
      'run.checkpoint_every_steps': 1, 'run.summary_every_steps': 1})
  repository = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, '-m', 'tests.training.ram_main', data_dir, root]
      + [f'--gin_bindings={binding}' for binding in bindings],
      env=dict(env, TMPDIR=str(temporary),
               PYTHONPATH=os.pathsep.join(
                   [repository, env.get('PYTHONPATH', '')])),
      cwd=cwd, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  line, = [line for line in result.stdout.splitlines()
           if line.startswith(ram_main.RESULT_PREFIX)]
  return name, json.loads(line[len(ram_main.RESULT_PREFIX):]), \
      result.stderr, (cwd, temporary)


def test_every_output_is_written_to_the_ram_model_dir(ram_run):
  _, result, _, _ = ram_run
  found = result['files']
  for name in ('run.json', 'operative_config.gin', 'best_model.keras',
               'final_model.keras', 'eval/metrics.json',
               'eval/confusion_matrix.png', 'checkpoints/checkpoint'):
    assert found.get(name), name
  checkpoints = sorted(n for n in found if n.endswith('.index'))
  assert checkpoints == [f'checkpoints/ckpt-{step}.index'
                         for step in (2, 3, 4)]  # keep_checkpoints
  for summary_dir in ('train', 'validation', 'eval'):
    assert any(n.startswith(f'{summary_dir}/events.out.tfevents.')
               for n in found), summary_dir
  # Two train_and_eval runs and one eval run each evaluated once.
  assert sum(n.startswith('eval/events.') for n in found) == 3
  assert not [n for n in found if '.tmp-' in n or '.write-test-' in n]


def test_resume_and_eval_mode_read_the_ram_model_dir(ram_run):
  _, result, stderr, _ = ram_run
  assert 'Resuming at epoch 1, step 2 of it (global step 2)' in stderr
  assert 'Trained 4 steps' in stderr
  # --mode=eval restored the newest ram:// checkpoint and got the metrics
  # the training run had written for it.
  assert result['eval_matches_training']


def test_nothing_is_written_to_the_local_disk_under_the_ram_path(ram_run):
  name, _, _, local_dirs = ram_run
  for directory in local_dirs:
    for root, dirs, names in os.walk(directory):
      for entry in dirs + names:
        assert name not in entry and not entry.startswith('ram:'), (
            os.path.join(root, entry))
  assert not os.path.exists('ram:')


def test_outputs_written_in_process_to_ram_read_back():
  # ram:// is in this process's memory too: the writers read back as is.
  model_dir = f'ram://movinet-{uuid.uuid4().hex[:12]}/run'
  identity = run_identity.RunIdentity(model_id='a0', seed=1)
  run_identity.write(model_dir, identity)
  assert run_identity.read(model_dir) == identity

  files.write_atomically(f'{model_dir}/bytes.bin', b'\x00\x01')
  with tf.io.gfile.GFile(f'{model_dir}/bytes.bin', 'rb') as f:
    assert f.read() == b'\x00\x01'

  metrics = evaluation.compute_metrics(
      np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]), ['a', 'b'])
  png = evaluation.write_eval_outputs(metrics, f'{model_dir}/eval')
  with tf.io.gfile.GFile(f'{model_dir}/eval/metrics.json') as f:
    assert json.load(f) == dataclasses.asdict(metrics)
  with tf.io.gfile.GFile(f'{model_dir}/eval/confusion_matrix.png', 'rb') as f:
    assert f.read() == png

  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  files.save_model(model, f'{model_dir}/final_model.keras')
  loaded = keras.saving.load_model(f'{model_dir}/final_model.keras')
  np.testing.assert_array_equal(loaded.layers[0].kernel.numpy(),
                                model.layers[0].kernel.numpy())
  assert sorted(tf.io.gfile.listdir(model_dir)) == [
      'bytes.bin', 'eval', 'final_model.keras', 'run.json']
