"""Chooses the `tf.distribute` strategy that training runs under.

`--strategy` picks one by name:

- `auto`: `tpu` if `--tpu` is given, `mirrored` with several GPUs, one GPU
  with `one_device`, else `cpu`.
- `cpu`: one replica on the CPU.
- `one_device`: one replica on the first GPU (the CPU if there is none).
- `mirrored`: one replica per local GPU, variables mirrored and gradients
  all-reduced each step. Without GPUs it mirrors over the logical CPU devices
  (tests use two to check that replicas add up to one).
- `tpu`: every core of the TPU named by `--tpu` ('local' on a TPU VM).
- `multi_worker`: every GPU (or the CPU) of several machines, described by
  `TF_CONFIG` or a SLURM allocation (`multi_worker`).

Global batch size: the `batch_size` binding is the GLOBAL batch; each step
splits it evenly over `strategy.num_replicas_in_sync` replicas, so it must be
a multiple of that. Doubling the replicas at a fixed global batch halves each
replica's batch and leaves the optimisation unchanged; to keep each replica
as busy, scale the batch (and usually the learning rate) with the replicas.
"""

from typing import Callable, Optional

from absl import logging
import tensorflow as tf

from trainer.training import multi_worker

STRATEGIES = ('auto', 'cpu', 'one_device', 'mirrored', 'tpu', 'multi_worker')
DEFAULT_CLUSTER_TIMEOUT = 600  # seconds


class StrategyError(ValueError):
  """The requested strategy cannot run here; the message says what to change."""


def _cpu(tpu: Optional[str]) -> tf.distribute.Strategy:
  del tpu
  return tf.distribute.OneDeviceStrategy('/cpu:0')


def _one_device(tpu: Optional[str]) -> tf.distribute.Strategy:
  del tpu
  gpus = tf.config.list_logical_devices('GPU')
  return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')


def _mirrored(tpu: Optional[str]) -> tf.distribute.Strategy:
  del tpu
  devices = tf.config.list_logical_devices('GPU')
  if not devices:
    devices = tf.config.list_logical_devices('CPU')
    logging.warning('--strategy=mirrored found no GPU; mirroring over %d '
                    'CPU device(s).', len(devices))
  return tf.distribute.MirroredStrategy([d.name for d in devices])


def _tpu(tpu: Optional[str]) -> tf.distribute.Strategy:
  """A TPUStrategy on the initialized TPU system `tpu`."""
  if not tpu:
    raise StrategyError('--strategy=tpu needs --tpu: the TPU name, or '
                        '--tpu=local on a Cloud TPU VM.')
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise StrategyError(
        f'Cannot reach the TPU --tpu={tpu!r}: {first_line}. Check the name '
        '(and that this machine may use it), or use --tpu=local on a TPU VM.'
    ) from error
  return tf.distribute.TPUStrategy(resolver)


def _auto(tpu: Optional[str]) -> tf.distribute.Strategy:
  if tpu:
    return _tpu(tpu)
  num_gpus = len(tf.config.list_logical_devices('GPU'))
  if num_gpus > 1:
    return _mirrored(tpu)
  return _one_device(tpu) if num_gpus else _cpu(tpu)


_BUILDERS: dict[str, Callable[[Optional[str]], tf.distribute.Strategy]] = {
    'auto': _auto,
    'cpu': _cpu,
    'one_device': _one_device,
    'mirrored': _mirrored,
    'tpu': _tpu,
}


def build_strategy(name: str, tpu: Optional[str] = None,
                   cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT
                   ) -> tf.distribute.Strategy:
  """Returns the strategy `--strategy=name` asks for (see the module doc).

  Args:
    name: one of `STRATEGIES`.
    tpu: the TPU's name or address, for `tpu` and `auto`.
    cluster_timeout: seconds `multi_worker` waits for all workers to join.

  Raises:
    StrategyError: an unknown name, a TPU that cannot be reached, or a
      missing or wrong cluster description for `multi_worker`.
  """
  if name not in STRATEGIES:
    raise StrategyError(f'--strategy={name!r} is not supported; use one of '
                        f'{", ".join(STRATEGIES)}.')
  if tpu and name not in ('auto', 'tpu'):
    raise StrategyError(f'--tpu={tpu!r} only goes with --strategy=tpu or '
                        f'auto, not --strategy={name}.')
  if name == 'multi_worker':
    try:
      strategy = multi_worker.build_strategy(cluster_timeout)
    except multi_worker.ClusterError as error:
      raise StrategyError(str(error)) from error
  else:
    strategy = _BUILDERS[name](tpu)
  logging.info('Strategy %s with %d replica(s).', type(strategy).__name__,
               strategy.num_replicas_in_sync)
  return strategy
