"""Strategy selection on this machine (CPU only), in-process.

Nothing here configures devices (TensorFlow allows that once per process) or
joins a cluster: multi-worker and TPU runs are covered by subprocess tests.
"""

import pytest
import tensorflow as tf

from trainer.training import strategies

CPU0 = '/job:localhost/replica:0/task:0/device:CPU:0'


@pytest.fixture(scope='module', autouse=True)
def cpu_only():
  if tf.config.list_logical_devices('GPU'):
    pytest.skip('these tests expect a machine without GPUs')


def _replica_sum(strategy) -> float:
  """The sum over replicas of 1.0, computed by running on each replica."""
  per_replica = strategy.run(lambda: tf.constant(1.0))
  return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                               axis=None))


@pytest.mark.parametrize('name', ['auto', 'cpu', 'one_device'])
def test_single_replica_strategies_use_the_cpu(name):
  strategy = strategies.build_strategy(name)
  assert type(strategy) is tf.distribute.OneDeviceStrategy  # pylint: disable=unidiomatic-typecheck
  assert strategy.num_replicas_in_sync == 1
  assert strategy.extended.worker_devices == (CPU0,)
  assert _replica_sum(strategy) == 1.0


def _local_name(device: str) -> str:
  return device.rsplit('/', 1)[-1]  # 'device:CPU:0'


def test_mirrored_without_gpus_mirrors_over_the_cpu_devices(caplog):
  cpus = [device.name for device in tf.config.list_logical_devices('CPU')]
  strategy = strategies.build_strategy('mirrored')
  assert isinstance(strategy, tf.distribute.MirroredStrategy)
  assert strategy.num_replicas_in_sync == len(cpus)
  assert ([_local_name(d) for d in strategy.extended.worker_devices] ==
          [_local_name(d) for d in cpus])
  assert _replica_sum(strategy) == len(cpus)
  assert (f'--strategy=mirrored found no GPU; mirroring over {len(cpus)} '
          'CPU device(s).') in caplog.messages


def test_variables_created_in_scope_live_on_the_cpu():
  strategy = strategies.build_strategy('cpu')
  with strategy.scope():
    variable = tf.Variable(3.0)
  assert variable.device == CPU0


def test_strategy_names_are_the_documented_ones():
  assert strategies.STRATEGIES == (
      'auto', 'cpu', 'one_device', 'mirrored', 'tpu', 'multi_worker')


@pytest.mark.parametrize('name', ['gpu', 'Mirrored', '', 'parameter_server'])
def test_unknown_name_lists_the_choices(name):
  with pytest.raises(strategies.StrategyError) as error:
    strategies.build_strategy(name)
  assert str(error.value) == (
      f'--strategy={name!r} is not supported; use one of auto, cpu, '
      'one_device, mirrored, tpu, multi_worker.')


def test_strategy_error_is_a_value_error():
  assert issubclass(strategies.StrategyError, ValueError)


@pytest.mark.parametrize('tpu', [None, ''])
def test_tpu_without_a_tpu_name_says_to_pass_it(tpu):
  with pytest.raises(strategies.StrategyError,
                     match='--strategy=tpu needs --tpu: the TPU name, or '
                     '--tpu=local on a Cloud TPU VM.'):
    strategies.build_strategy('tpu', tpu=tpu)


@pytest.mark.parametrize('name', ['cpu', 'one_device', 'mirrored',
                                  'multi_worker'])
def test_tpu_name_with_another_strategy_is_refused(name):
  with pytest.raises(strategies.StrategyError) as error:
    strategies.build_strategy(name, tpu='my-tpu')
  assert str(error.value) == (
      "--tpu='my-tpu' only goes with --strategy=tpu or auto, not "
      f'--strategy={name}.')


def test_multi_worker_without_a_cluster_says_what_is_missing(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  monkeypatch.delenv('SLURM_JOB_ID', raising=False)
  with pytest.raises(strategies.StrategyError,
                     match='--strategy=multi_worker needs TF_CONFIG'):
    strategies.build_strategy('multi_worker', cluster_timeout=1)


@pytest.mark.parametrize('tf_config, problem', [
    ('{not json', 'is not valid JSON'),
    ('[]', 'is not a JSON object'),
    ('{"task": {"type": "worker", "index": 0}}', 'has no "cluster"'),
])
def test_multi_worker_with_a_bad_tf_config_names_it(monkeypatch, tf_config,
                                                    problem):
  # Rejected while reading TF_CONFIG, before any server starts.
  monkeypatch.setenv('TF_CONFIG', tf_config)
  with pytest.raises(strategies.StrategyError) as error:
    strategies.build_strategy('multi_worker', cluster_timeout=1)
  assert str(error.value).startswith(f'TF_CONFIG {problem}')
