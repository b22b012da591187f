"""Training on several machines: `MultiWorkerMirroredStrategy` with Keras 3.

Every machine runs the same `movinet-train --strategy=multi_worker` command;
`TF_CONFIG` (see `launch/multi_worker.sh`) or a SLURM allocation tells each
one the cluster and its own place in it. Each step all-reduces the gradients
of every worker's replicas, so all workers hold identical weights.

- The chief (task `chief`, else worker 0) writes `model_dir`. The others take
  part in every save (saving reads variables whose values live on all
  workers) but write into a temporary directory of their own, removed at the
  end (`worker_write_dir`). `model_dir` must be reachable from every worker
  (gs:// or a shared file system): all of them resume from its checkpoints.
- Each worker reads its part of the training shards and takes the same
  number of steps per epoch (`pipeline.assign_shards`); evaluation batches
  are dealt out among the workers.
- Joining the cluster waits at most `--cluster_timeout` seconds; a worker that
  dies later is noticed by the others within TensorFlow's heartbeat timeout
  (about 10 s) and they stop with `cluster.EXIT_CLUSTER_FAILURE`. Restarting all
  workers with the same command resumes from the newest checkpoint.

Keras 3's `fit`, `evaluate` and `predict` do not run under this strategy as
they are (keras-team/keras#20585, tensorflow/tensorflow#72388):

1. Before the first step Keras builds the model from one batch, which it
   averages over the replicas with `strategy.reduce(..., axis=None)`; across
   workers that fails with `ValueError: Attempt to convert a value
   (PerReplica:...)`. `use_keras_fit` builds from this worker's first local
   batch instead (only shapes and dtypes are needed).
2. Keras then reduces each step's logs with `strategy.reduce("MEAN", value,
   axis=0)`, which fails on scalar logs ("Invalid reduction dimension 0"),
   and would leave each worker with its own replicas' values. `use_keras_fit`
   averages the logs over all replicas inside the step and gives them the
   leading axis of length 1 that Keras' reduction expects.

Both workarounds are confined to the model objects `use_keras_fit` is given;
nothing in Keras is patched globally.
"""

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from typing import Optional

from absl import logging
import keras
import tensorflow as tf

TASK_TYPES = ('chief', 'worker')
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class ClusterError(ValueError):
  """The cluster description is wrong or the cluster cannot be joined."""


def _tf_config_error(problem: str) -> ClusterError:
  return ClusterError(f'TF_CONFIG {problem}. It should look like '
                      f'{TF_CONFIG_EXAMPLE}, with this machine\'s task '
                      '(launch/multi_worker.sh writes it).')


def check_tf_config(text: str) -> dict:
  """Parses `TF_CONFIG` and checks the cluster and this machine's task.

  Returns:
    The parsed config.

  Raises:
    ClusterError: naming what is wrong.
  """
  try:
    config = json.loads(text)
  except json.JSONDecodeError as error:
    raise _tf_config_error(f'is not valid JSON ({error})') from error
  if not isinstance(config, dict):
    raise _tf_config_error('is not a JSON object')
  cluster, task = config.get('cluster'), config.get('task')
  if not isinstance(cluster, dict) or not cluster:
    raise _tf_config_error('has no "cluster"')
  unsupported = sorted(set(cluster) - set(TASK_TYPES))
  if unsupported:
    raise _tf_config_error(
        f'has job(s) {unsupported}; --strategy=multi_worker uses only '
        f'{" and ".join(TASK_TYPES)}')
  for job, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses or not all(
        isinstance(a, str) and a.rpartition(':')[2].isdigit()
        for a in addresses)):
      raise _tf_config_error(f'cluster "{job}" is not a list of "host:port" '
                             f'strings: {addresses!r}')
  if len(cluster.get('chief', [])) > 1:
    raise _tf_config_error('has more than one "chief"')
  if not isinstance(task, dict) or 'type' not in task or 'index' not in task:
    raise _tf_config_error('has no "task" with "type" and "index"')
  task_type, index = task['type'], task['index']
  if task_type not in cluster:
    raise _tf_config_error(f'task type {task_type!r} is not a job of the '
                           f'cluster ({sorted(cluster)})')
  if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
    raise _tf_config_error(
        f'task index {index!r} is not in 0..{len(cluster[task_type]) - 1} '
        f'for the {len(cluster[task_type])} "{task_type}" address(es)')
  return config


def cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
  """The cluster from `TF_CONFIG`, else from a SLURM allocation.

  Raises:
    ClusterError: neither is there, or `TF_CONFIG` is wrong (named).
  """
  if 'TF_CONFIG' in os.environ:
    check_tf_config(os.environ['TF_CONFIG'])
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()
  if 'SLURM_JOB_ID' in os.environ:
    # One task per node, using all of the node's GPUs. (The resolver only
    # books GPUs here, as auto_set_gpu is off; it cannot count zero.)
    try:
      return tf.distribute.cluster_resolver.SlurmClusterResolver(
          gpus_per_node=max(1, len(tf.config.list_physical_devices('GPU'))),
          auto_set_gpu=False)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
      raise ClusterError(f'The SLURM allocation cannot be read ({error}); '
                         'start one task per node with `srun`, or set '
                         'TF_CONFIG.') from error
  raise ClusterError('--strategy=multi_worker needs TF_CONFIG (the cluster '
                     'and this machine\'s task) or a SLURM job; start the '
                     'workers with launch/multi_worker.sh.')


# A child process that kills its parent unless told to stop in time. While
# joining the cluster TensorFlow blocks in C++ holding the GIL, so neither a
# Python thread nor a signal handler of the parent could run.
_WATCHDOG = r"""
import os, select, signal, sys
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if not select.select([sys.stdin], [], [], seconds)[0]:
  sys.stderr.write(message + '\n')
  sys.stderr.flush()
  os.kill(parent, signal.SIGKILL)
"""


class _Deadline:
  """Kills this process, after printing `message`, if the `with` block
  takes longer than `seconds`."""

  def __init__(self, seconds: float, message: str):
    self.seconds = seconds
    self.message = message
    self._watchdog = None

  def __enter__(self):
    self._watchdog = subprocess.Popen(
        [sys.executable, '-c', _WATCHDOG, str(os.getpid()), str(self.seconds),
         self.message], stdin=subprocess.PIPE)
    return self

  def __exit__(self, *exc_info):
    self._watchdog.stdin.close()  # end of input: the watchdog exits quietly
    self._watchdog.wait()


def _addresses(resolver) -> list[str]:
  return [address for job in TASK_TYPES
          for address in resolver.cluster_spec().as_dict().get(job, [])]


def build_strategy(cluster_timeout: float
                   ) -> tf.distribute.MultiWorkerMirroredStrategy:
  """Joins the cluster; see the module docstring.

  Args:
    cluster_timeout: seconds to wait for every worker to join; past it the
      process prints why and is killed (it cannot be interrupted otherwise).

  Raises:
    ClusterError: no cluster description, or a wrong one.
  """
  resolver = cluster_resolver()
  addresses = _addresses(resolver)
  task = f'{resolver.task_type} {resolver.task_id}'
  logging.info('Joining the cluster as %s of %s (waiting up to %d s).', task,
               ', '.join(addresses), cluster_timeout)
  message = (f'movinet-train: error: {task} could not join the cluster '
             f'{", ".join(addresses)} within --cluster_timeout='
             f'{cluster_timeout:g} s; start every worker (each with its own '
             'TF_CONFIG task) and check that these addresses are reachable '
             'from each machine')
  with _Deadline(cluster_timeout, message):
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver)
  logging.info('Joined: %d worker(s), %d replica(s) in all.',
               num_workers(strategy), strategy.num_replicas_in_sync)
  return strategy


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Machines taking part (1 unless `strategy` spans several)."""
  if not is_multi_worker(strategy):
    return 1
  return len(_addresses(strategy.cluster_resolver))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes `model_dir` (always, on one machine)."""
  return bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def worker_write_dir(model_dir: str, strategy: tf.distribute.Strategy):
  """Yields `model_dir` on the chief; elsewhere a temporary directory,
  removed on exit, for the writes every worker must make (see the module
  docstring)."""
  if is_chief(strategy):
    yield model_dir
    return
  temporary = tempfile.mkdtemp(prefix='movinet-worker-')
  try:
    yield temporary
  finally:
    shutil.rmtree(temporary, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _replica_sum(strategy: tf.distribute.Strategy):
  """A compiled sum over all replicas of an int64 scalar (of replica 0's
  alone if `first_only`); compiled, as eager collectives are slow."""

  @tf.function(autograph=False)  # no Python control flow to convert
  def replica_sum(value, first_only):

    def contribution():
      replica = tf.distribute.get_replica_context().replica_id_in_sync_group
      counts = tf.logical_or(tf.logical_not(first_only), tf.equal(replica, 0))
      return tf.where(counts, value, tf.zeros_like(value))

    return strategy.reduce('SUM', strategy.run(contribution), axis=None)

  return replica_sum


def agree(strategy: tf.distribute.Strategy, value: int) -> int:
  """The chief's `value` (an int), on every worker (all must call this)."""
  if not is_multi_worker(strategy):
    return value
  return int(_replica_sum(strategy)(tf.constant(value, tf.int64), True))


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether `flag` is true on any worker (all must call this)."""
  if not is_multi_worker(strategy):
    return flag
  return bool(int(_replica_sum(strategy)(tf.constant(int(flag), tf.int64),
                                         False)))


def _build_from_local_batch(self, iterator=None, data_batch=None):
  """Keras' symbolic build from this worker's first local batch (fix 1)."""
  strategy = self.distribute_strategy
  if iterator is not None:
    for _, _, batches in iterator:
      data_batch = tf.nest.map_structure(
          lambda value: strategy.experimental_local_results(value)[0],
          next(batches))
      break
  with strategy.scope():
    # pylint: disable-next=protected-access
    self._symbolic_build(data_batch=data_batch)


def _with_global_logs(step):
  """`step` whose logs are averaged over all replicas, shaped (1,) (fix 2)."""

  def step_with_global_logs(data):
    logs = tf.distribute.get_replica_context().all_reduce('MEAN', step(data))
    return tf.nest.map_structure(lambda value: tf.reshape(value, [1]), logs)

  return step_with_global_logs


def use_keras_fit(model: keras.Model,
                  strategy: Optional[tf.distribute.Strategy] = None) -> None:
  """Lets `model.fit`/`evaluate`/`predict` run under multi-worker training
  (the two workarounds of the module docstring); no-op otherwise."""
  if not is_multi_worker(strategy or model.distribute_strategy):
    return
  model._maybe_symbolic_build = types.MethodType(  # pylint: disable=protected-access
      _build_from_local_batch, model)
  model.train_step = _with_global_logs(model.train_step)
  model.test_step = _with_global_logs(model.test_step)
