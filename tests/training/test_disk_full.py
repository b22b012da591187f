"""A full disk while saving: the error names the path, nothing is left.

The disk is a real one: a 256 KiB tmpfs mounted for the test (Linux, as
root, which CI is; without root the tests are skipped). The model's
weights (~1.3 MB) do not fit in it.
"""

import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import files
from trainer.training import checkpointing


@pytest.fixture
def small_disk(tmp_path):
  """A mounted 256 KiB tmpfs, unmounted after the test."""
  mount_point = tmp_path / 'disk'
  mount_point.mkdir()
  mounted = subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(mount_point)],
      capture_output=True, text=True, check=False)
  if mounted.returncode != 0:
    if os.geteuid() == 0:  # as in CI: the test must run
      pytest.fail(f'cannot mount a tmpfs: {mounted.stderr.strip()}')
    pytest.skip('mounting a tmpfs needs root')
  yield mount_point
  subprocess.run(['umount', str(mount_point)], check=True)


def _big_model() -> keras.Model:
  with tf.distribute.OneDeviceStrategy('/cpu:0').scope():
    model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(1280)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss='mse')
  return model


def test_a_keras_save_names_the_path_and_leaves_nothing(small_disk):
  path = str(small_disk / 'final_model.keras')
  with pytest.raises(OSError, match=f'Could not save {path}: .*Free space'):
    files.save_model(_big_model(), path)
  assert not os.listdir(small_disk)


def test_a_checkpoint_save_names_the_folder_and_leaves_nothing(small_disk):
  model = _big_model()
  model.fit(np.zeros((2, 256), np.float32), np.zeros((2, 1280), np.float32),
            verbose=0)
  checkpoint = checkpointing.TrainingCheckpoint(str(small_disk))
  checkpoint.attach(model)
  with pytest.raises(OSError,
                     match=f'Could not save a checkpoint in {small_disk}/'
                           'checkpoints: .*Free space'):
    checkpoint.save(checkpointing.Progress(10, step_in_epoch=1))
  assert os.listdir(small_disk / 'checkpoints') in ([], ['checkpoint'])
