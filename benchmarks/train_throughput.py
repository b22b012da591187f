"""End-to-end training throughput, and how much of a step waits on input.

For each configuration, alternately in one run:
- end to end: `fit` on the run's own distributed input (read, decode, crop,
  batch) for one epoch;
- step only: `fit` on one batch held in memory, repeated for as many steps.
Both use the same compiled model and count the steps after the first of each
`fit` call. The fraction of step time spent waiting on input is
1 - (step-only time / end-to-end time).

Configurations: the quickstart (a0, batch 8, 8 x 64 x 64) and a0 at
8 x 172 x 172 (batch 8), on the synthetic dataset (16-frame 120 x 160 videos;
172 crops are upscaled, which decodes as much as a real video would).

  PYTHONPATH=. python benchmarks/train_throughput.py [--rounds=3]
"""

import argparse
import os
import statistics
import tempfile
import time

import keras
import tensorflow as tf

from trainer.data.prepare import prepare
from trainer.data.sampling import Sampling
from trainer.training import factories
from trainer.training import inputs as inputs_lib
from trainer.training.cluster import Cluster
from trainer.training.config import InputsConfig
from trainer.training.config import ModelConfig
from trainer.training.config import OptimizerConfig

CONFIGS = {
    'quickstart (a0, 8x64x64)': dict(image_size=64, frame_step=2),
    'a0, 8x172x172': dict(image_size=172, frame_step=2),
}


class StepTimer(keras.callbacks.Callback):
  """Seconds from the end of the first step to the end of the last."""

  def __init__(self):
    super().__init__()
    self.start = self.end = None
    self.steps = 0

  def on_train_begin(self, logs=None):
    self.start = self.end = None
    self.steps = 0

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    if self.start is None:
      self.start = now
    else:
      self.steps += 1
    self.end = now

  def seconds_per_step(self) -> float:
    return (self.end - self.start) / self.steps


def measure(data_dir: str, rounds: int, image_size: int, frame_step: int):
  """Median seconds per step: (through the pipeline, from one batch in RAM)."""
  cluster = Cluster(tf.distribute.OneDeviceStrategy('/cpu:0'))
  strategy = cluster.strategy
  inputs = inputs_lib.VideoInputs.read(InputsConfig(
      data_dir, batch_size=8, sampling=Sampling(
          num_frames=8, frame_step=frame_step, image_size=image_size,
          flip=False)), cluster)
  steps = inputs.steps_per_epoch
  with strategy.scope():
    model = factories.build_model(ModelConfig(model_id='a0'),
                                  inputs.num_classes)
    factories.compile_model(
        model, factories.build_optimizer(OptimizerConfig(), steps,
                                         steps * rounds),
        inputs.num_classes)
  first = next(iter(inputs.train_dataset(strategy, seed=0, epoch=0,
                                         deterministic=False)))
  batch = tf.nest.map_structure(lambda x: x.values[0] if hasattr(
      x, 'values') else x, first)
  in_memory = tf.data.Dataset.from_tensors(batch).repeat()
  timer = StepTimer()
  # Warm up: trace the step, fill caches.
  fit = dict(verbose=0, callbacks=[timer], shuffle=False)
  model.fit(in_memory, steps_per_epoch=3, **fit)
  end_to_end, step_only = [], []
  for epoch in range(rounds):
    model.fit(inputs.train_dataset(strategy, seed=0, epoch=epoch,
                                   deterministic=False),
              steps_per_epoch=steps, **fit)
    end_to_end.append(timer.seconds_per_step())
    model.fit(in_memory, steps_per_epoch=steps, **fit)
    step_only.append(timer.seconds_per_step())
  return statistics.median(end_to_end), statistics.median(step_only)


def main():
  parser = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as scratch:
    data_dir = os.path.join(scratch, 'synthetic')
    prepare(data_dir, source='synthetic', workers=1)
    print(f'{"configuration":28s} {"end to end":>14s} {"step only":>14s} '
          f'{"input wait":>10s}')
    for name, config in CONFIGS.items():
      total, step = measure(data_dir, args.rounds, **config)
      print(f'{name:28s} {8 / total:9.1f} clip/s {8 / step:9.1f} clip/s '
            f'{max(0.0, 1 - step / total):9.1%}')


if __name__ == '__main__':
  main()
