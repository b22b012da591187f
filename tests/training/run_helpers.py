"""Runs `movinet-train` in a subprocess on tiny synthetic data; builds the
run's callback for in-process tests."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from trainer.data.prepare import prepare
from trainer.training import callback
from trainer.training import preemption
from trainer.training import summaries
from trainer.training.cluster import Cluster

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STEPS_PER_EPOCH = 8  # 32 training clips, batch 4
EPOCHS = 2


def run_callback(model_dir, checkpoint, progress, *, total_steps,
                 checkpoint_every_steps=100, summary_every_steps=100,
                 watcher=None) -> callback.RunCallback:
  """The run's callback as `Trainer.train` makes it, on this process's CPU."""
  return callback.RunCallback(
      checkpoint, progress,
      summaries=summaries.Summaries(str(model_dir), summary_every_steps),
      watcher=watcher or preemption.PreemptionWatcher(),
      cluster=Cluster(tf.distribute.OneDeviceStrategy('/cpu:0')),
      schedule=callback.Schedule(total_steps, checkpoint_every_steps,
                                 preemption_poll_steps=10),
      best_model_path=os.path.join(model_dir, 'best_model.keras'))


def prepare_tiny(output_dir, **kwargs) -> str:
  """8 train and 4 test clips per class of 48x64 synthetic videos."""
  settings = dict(source='synthetic', workers=1, splits='train:8,test:4',
                  synthetic_size=(48, 64)) | kwargs
  prepare(str(output_dir), **settings)
  return str(output_dir)


def tiny_bindings(data_dir: str, **overrides) -> list[str]:
  """Bindings of a run of 2 epochs of 8 steps that takes ~30 s on 2 cores."""
  bindings = {
      'build_inputs.data_dir': repr(data_dir),
      'build_inputs.batch_size': 4,
      'build_inputs.num_frames': 4,
      'build_inputs.frame_step': 2,
      'build_inputs.image_size': 32,
      'build_inputs.flip': False,
      'build_model.model_id': "'a0'",
      'build_model.dropout_rate': 0.2,  # dropout's seed state must resume too
      'run.epochs': EPOCHS,
      'run.seed': 3,
      'run.deterministic': True,
      'run.checkpoint_every_steps': 3,
      'run.summary_every_steps': 2,
      'run.verbose': 2,
  } | overrides
  return [f'{name} = {value}' for name, value in bindings.items()]


def command(model_dir, bindings, *flags) -> list[str]:
  args = [sys.executable, '-m', 'trainer.main', f'--model_dir={model_dir}']
  args += [f'--gin_bindings={binding}' for binding in bindings]
  return args + list(flags)


def environment(tmp_cache) -> dict:
  return dict(os.environ, TRAINER_CACHE_DIR=str(tmp_cache),
              TF_CPP_MIN_LOG_LEVEL='2')


def train(model_dir, bindings, *flags, env, timeout=600):
  """Runs to the end; returns the CompletedProcess (stdout+stderr text)."""
  return subprocess.run(command(model_dir, bindings, *flags), env=env,
                        capture_output=True, text=True, timeout=timeout)


def start(model_dir, bindings, *flags, env) -> subprocess.Popen:
  return subprocess.Popen(command(model_dir, bindings, *flags), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def final_variables(model_dir) -> dict[str, np.ndarray]:
  """Model and optimizer variables of the newest checkpoint."""
  latest = tf.train.latest_checkpoint(os.path.join(str(model_dir),
                                                   'checkpoints'))
  reader = tf.train.load_checkpoint(latest)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith(('model/', 'optimizer/'))}


def max_difference(first: dict, second: dict) -> float:
  assert sorted(first) == sorted(second)
  return max(float(np.max(np.abs(first[k].astype(np.float64)
                                 - second[k].astype(np.float64))))
             for k in first)


def snapshot(directory) -> dict[str, str]:
  """sha256 of every file under `directory`, by relative path."""
  files = {}
  for root, _, names in os.walk(str(directory)):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, directory)] = hashlib.sha256(
            f.read()).hexdigest()
  return files
