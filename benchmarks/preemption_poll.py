"""What asking every worker about SIGTERM costs per training step.

Across workers, `Cluster.any_worker` is a collective op: every worker must
take part, so a run asks only every `run.preemption_poll_steps` steps
(`Cluster.polls_at`). This starts two local workers (two processes joined by
`MultiWorkerMirroredStrategy` on 127.0.0.1, as `launch/multi_worker.sh
--local=2` does) and, in the same processes, alternates `fit` epochs that
ask at every step, every 10 steps (the default), and never. It reports ms
per step of each and the cost of one ask.

The model is a small dense classifier (a step of ~1-2 ms), so the ask's share
of a step is an upper bound: a MoViNet step takes 10 to 1000 times longer.
Start-up and each epoch's first step (tracing) are left out; the steps of
all epochs after the first of each setting are counted.

  PYTHONPATH=. python benchmarks/preemption_poll.py [--steps=300 --rounds=3]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

SETTINGS = {'every step': 1, 'every 10 steps': 10, 'never': 0}


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def worker(steps: int, rounds: int) -> dict:
  """Runs in each worker process; returns ms per step by setting."""
  # pylint: disable=import-outside-toplevel
  import keras
  import numpy as np
  import tensorflow as tf

  from trainer.training.cluster import Cluster
  # pylint: enable=import-outside-toplevel

  cluster = Cluster(tf.distribute.MultiWorkerMirroredStrategy())

  class Poll(keras.callbacks.Callback):
    """Asks every worker at the steps the run would; times the epoch."""

    def __init__(self, every: int):
      super().__init__()
      self.every, self.step, self.start = every, 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
      self.step += 1
      if self.step == 1:
        self.start = time.perf_counter()
      if self.every and cluster.polls_at(self.step, self.every):
        cluster.any_worker(False)

  with cluster.strategy.scope():
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(64, activation='relu'),
                              keras.layers.Dense(4)])
    model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
  cluster.prepare_model(model)
  features = np.random.default_rng(0).normal(size=(16, 64)).astype('float32')
  dataset = tf.data.Dataset.from_tensors(
      (features, np.zeros(16, 'int32'))).repeat()
  times = {name: [] for name in SETTINGS}
  for round_index in range(rounds + 1):
    for name, every in SETTINGS.items():
      poll = Poll(every)
      model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                callbacks=[poll], shuffle=False)
      if round_index:  # the first round traces and warms up
        times[name].append(
            (time.perf_counter() - poll.start) * 1e3 / (steps - 1))
  return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args.steps, args.rounds)))
    return
  addresses = [f'127.0.0.1:{port}' for port in _free_ports(2)]
  processes = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_CONFIG=json.dumps({
        'cluster': {'worker': addresses},
        'task': {'type': 'worker', 'index': index}}))
    # Both must run at once; `communicate` below waits for each.
    processes.append(subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, __file__, '--worker', f'--steps={args.steps}',
         f'--rounds={args.rounds}'], env=env, stdout=subprocess.PIPE,
        text=True))
  results = []
  for process in processes:
    output, _ = process.communicate(timeout=1800)
    if process.returncode:
      sys.exit(f'a worker failed (exit status {process.returncode})')
    results.append(json.loads(output.strip().splitlines()[-1]))
  chief = results[0]
  print(f'2 local workers, {args.steps} steps per epoch, median of '
        f'{args.rounds} epochs per setting (worker 0):')
  for name, milliseconds in chief.items():
    print(f'  ask {name:15s} {milliseconds:7.3f} ms/step')
  per_ask = chief['every step'] - chief['never']
  print(f'one ask costs {per_ask:.3f} ms; every step adds '
        f'{chief["every step"] / chief["never"]:.2f}x to this step, every 10 '
        f'steps {chief["every 10 steps"] / chief["never"]:.2f}x')


if __name__ == '__main__':
  main()
