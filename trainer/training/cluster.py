"""Everything about distribution, in one object: `Cluster`.

A run receives a `Cluster` and asks it, never the strategy or `TF_CONFIG`:
the strategy to build the model under, whether this process is the chief
(the one that writes `model_dir`), how many workers and replicas take part,
where this process writes, the chief's value of a number (`agree`), whether
any worker was asked to stop (`any_worker`), how to let Keras' `fit` run
under the strategy (`prepare_model`), and what to tell the user when a
worker is lost (`failure`). On one machine each of these does nothing.

`Cluster.connect` builds the strategy `--strategy` names (`strategies`);
joining several machines is in `multi_worker`, which only this module uses.
"""

import contextlib
import re
from typing import Iterator, Optional

import keras
import tensorflow as tf

from trainer.training import multi_worker
from trainer.training import strategies

# What `connect` accepts and raises, for the command's flags.
STRATEGIES = strategies.STRATEGIES
DEFAULT_CLUSTER_TIMEOUT = strategies.DEFAULT_CLUSTER_TIMEOUT
StrategyError = strategies.StrategyError

# Exit status when another worker died or cannot be reached, or the workers
# fell out of step (EX_UNAVAILABLE): restart every worker to resume.
EXIT_CLUSTER_FAILURE = 69

# How a collective op reports a worker that died or cannot be reached.
_LOST_WORKER = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.CancelledError, tf.errors.DeadlineExceededError)


class Cluster:
  """The strategy of a run and this process's place in it.

  Attributes:
    strategy: the `tf.distribute` strategy; build variables in its scope.
    num_workers: machines taking part (1 unless several).
    num_replicas: replicas in all (devices that each take a share of a batch).
    is_chief: whether this process writes `model_dir` (always, on one
      machine).
  """

  def __init__(self, strategy: tf.distribute.Strategy):
    self.strategy = strategy
    self._multi_worker = multi_worker.is_multi_worker(strategy)
    self.num_workers = multi_worker.num_workers(strategy)
    self.num_replicas = strategy.num_replicas_in_sync
    self.is_chief = bool(strategy.extended.should_checkpoint)

  @classmethod
  def connect(cls, name: str = 'auto', tpu: Optional[str] = None,
              timeout: float = DEFAULT_CLUSTER_TIMEOUT
              ) -> 'Cluster':
    """The cluster `--strategy=name` asks for (see `strategies`); under
    `multi_worker`, after every worker joined (waiting at most `timeout`
    seconds).

    Raises:
      StrategyError: an unknown name, a TPU that cannot be
        reached, or a missing or wrong cluster description.
    """
    return cls(strategies.build_strategy(name, tpu, timeout))

  @contextlib.contextmanager
  def write_dir(self, model_dir: str) -> Iterator[str]:
    """Yields `model_dir` on the chief; on the other workers a temporary
    directory, removed on exit, for the writes every worker must take part
    in (saving reads variables whose values live on all workers)."""
    with multi_worker.worker_write_dir(model_dir, self.strategy) as directory:
      yield directory

  def agree(self, value: int) -> int:
    """The chief's `value`, on every worker (all must call this)."""
    return multi_worker.agree(self.strategy, value)

  def any_worker(self, flag: bool) -> bool:
    """Whether `flag` is true on any worker (all must call this)."""
    return multi_worker.any_worker(self.strategy, flag)

  def polls_at(self, step: int, every_steps: int) -> bool:
    """Whether `any_worker` is asked at `step`: at every step on one
    machine, where it costs nothing; every `every_steps` steps across
    workers, where it is a collective op."""
    return not self._multi_worker or step % every_steps == 0

  def prepare_model(self, model: keras.Model) -> None:
    """Lets `model.fit`, `evaluate` and `predict` run under the strategy
    (two workarounds across workers, see `multi_worker`)."""
    multi_worker.use_keras_fit(model, self.strategy)

  def failure(self, error: BaseException) -> Optional[str]:
    """What to tell the user when `error` ends a run on several machines,
    if it is about the cluster: a worker was lost, or a collective op failed
    because the workers are not doing the same step (e.g. started with other
    settings or data). None for any other error, and on one machine."""
    if not self._multi_worker:
      return None
    return cluster_failure(error)


def cluster_failure(error: BaseException) -> Optional[str]:
  """See `Cluster.failure`."""
  if isinstance(error, _LOST_WORKER):
    return ('lost contact with another worker '
            f'({_unhealthy_tasks(error)}); restart every worker with the same '
            'command to resume from the newest checkpoint')
  if isinstance(error, tf.errors.OpError) and 'collective' in str(
      error).lower():
    return ('the workers fell out of step at a collective op ('
            f'{_collective_cause(error)}); start every worker with the same '
            'command, gin files, data and version, then rerun them all to '
            'resume from the newest checkpoint')
  return None


def _first_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return (lines[0] if lines else type(error).__name__).split(' [Op:')[0][:300]


def _unhealthy_tasks(error: tf.errors.OpError) -> str:
  """The tasks TensorFlow names as unhealthy, else its first line."""
  tasks = [line.strip() for line in str(error).splitlines()
           if line.strip().startswith('/job:')]
  if tasks:
    return ', '.join(tasks) + ' stopped sending heartbeats'
  return _first_line(error)


def _collective_cause(error: tf.errors.OpError) -> str:
  """The first line of a failed collective op's cause, without the op."""
  cause = str(error).rsplit('Collective ops is aborted by:', maxsplit=1)[-1]
  cause = re.sub(r'\{\{function_node [^}]*\}\}', '', cause).strip()
  return cause.splitlines()[0].split(' [Op:')[0][:300] if cause else (
      type(error).__name__)
