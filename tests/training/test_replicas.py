"""Two replicas take the same steps as one replica with the same global batch.

Guards against Keras 3 mis-scaling the loss or gradients under
MirroredStrategy (keras-team/keras #19891, #21069).
"""

import subprocess
import sys

import tensorflow as tf

from tests.training import run_helpers as runs

TOLERANCE = 1e-5


def test_two_replicas_equal_one(tmp_path):
  data_dir = runs.prepare_tiny(tmp_path / 'data')
  env = runs.environment(tmp_path / 'cache')
  bindings = runs.tiny_bindings(data_dir, **{
      'run.train_steps': 2, 'run.validate': False,
      'build_model.dropout_rate': 0.0,
      # Plain SGD: Adam divides each update by the gradient's own size, so
      # where a gradient is ~0 float rounding alone (replicas sum in another
      # order) moves the weight by up to the learning rate.
      'build_optimizer.name': "'sgd'",
      'build_optimizer.learning_rate': 0.1,
      # Batch statistics over the global batch, as one replica sees it.
      'build_model.use_sync_bn': True,
  })
  one = runs.train(tmp_path / 'one', bindings, '--mode=train',
                   '--strategy=cpu', env=env)
  assert one.returncode == 0, one.stderr[-3000:]
  two = subprocess.run(
      [sys.executable, '-m', 'tests.training.two_cpu_main',
       f'--model_dir={tmp_path / "two"}', '--mode=train',
       '--strategy=mirrored'] + [f'--gin_bindings={b}' for b in bindings],
      env=env, capture_output=True, text=True, timeout=600)
  assert two.returncode == 0, two.stderr[-3000:]
  assert 'MirroredStrategy with 2 replica(s)' in two.stderr

  first = runs.final_variables(tmp_path / 'one')
  second = runs.final_variables(tmp_path / 'two')
  assert runs.max_difference(first, second) <= TOLERANCE
  # Two steps were taken: the comparison is not of two initialisations.
  for model_dir in ('one', 'two'):
    assert tf.train.latest_checkpoint(
        str(tmp_path / model_dir / 'checkpoints')).endswith('ckpt-2')
  assert max(abs(v).max() for k, v in first.items()
             if k.startswith('optimizer/')) > 0  # momentum
