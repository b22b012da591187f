"""Replicas and workers take the same steps as one process.

Two replicas in one process (`--strategy=mirrored` over two logical CPU
devices) and two worker processes on 127.0.0.1 (`--strategy=multi_worker`)
are compared with one process at the same global batch (the workers through
a SIGKILL, a restart and a SIGTERM). This guards against Keras 3 mis-scaling
the loss or gradients under distribution (keras-team/keras #19891, #21069)
and checks the multi-worker workarounds.

The runs use synchronized BatchNorm (otherwise each replica keeps its own
moving statistics), no dropout (masks are drawn per replica), plain SGD
(Adam divides each update by the gradient's own size, so where a gradient is
~0 float rounding alone would move the weight by up to the learning rate)
and a record shuffle buffer of 1. The data has two training shards, so each
worker reads one, and a global batch of 4 is the same four clips for two
workers as for one process: the loss curves must then agree up to float
rounding.

The README's quickstart on two workers (`two_workers`) has three training
shards, which do not divide: there, every worker must take the same steps.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tests.training import run_helpers as runs
from trainer.training import cluster
from trainer.training import multi_worker
from trainer.training.preemption import EXIT_PREEMPTED

pytestmark = pytest.mark.slow(minutes=5)  # the module, on 2 cores

LOSS_TOLERANCE = 1e-5  # measured over 16 steps: at most 5e-7
WEIGHT_TOLERANCE = 1e-4  # measured after 16 steps: 1.3e-5 (weights up to 3.4)
# A dead worker is noticed by TensorFlow's heartbeats (~10 s); allow for a
# loaded machine.
LOST_WORKER_BOUND = 60  # seconds
JOIN_TIMEOUT = 5  # seconds, --cluster_timeout of the unreachable test


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return runs.prepare_tiny(tmp_path_factory.mktemp('data'), num_shards=2)


STEPS = 8  # one epoch


def _bindings(data_dir, **overrides):
  return runs.tiny_bindings(
      data_dir, **{'build_model.use_sync_bn': True,
                   'build_model.dropout_rate': 0.0,
                   'build_inputs.shuffle_buffer': 1,
                   'build_optimizer.name': "'sgd'",
                   'run.epochs': 1,
                   'run.checkpoint_every_steps': 2} | overrides)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _tf_config(ports, index):
  return json.dumps({
      'cluster': {'worker': [f'127.0.0.1:{port}' for port in ports]},
      'task': {'type': 'worker', 'index': index}})


def _start_workers(model_dir, bindings, env, *flags, count=2):
  ports = _free_ports(count)
  return [
      subprocess.Popen(
          runs.command(model_dir, bindings, '--strategy=multi_worker',
                       '--cluster_timeout=300', *flags),
          env=dict(env, TF_CONFIG=_tf_config(ports, index)),
          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for index in range(count)]


def _finish(workers, timeout=600):
  outputs = [worker.communicate(timeout=timeout)[0] for worker in workers]
  return [worker.returncode for worker in workers], outputs


def _fingerprint(output, weights='weights fingerprint'):
  return re.findall(rf'{weights} (\w+)', output)[-1]


def _losses(model_dir):
  accumulator = event_accumulator.EventAccumulator(
      str(model_dir / 'train'), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
          for event in accumulator.Tensors('loss')}


# Validation changes neither the weights nor the training loss.
_TRAIN_ONLY = ('--mode=train', '--gin_bindings=run.validate = False')


@pytest.fixture(scope='module')
def one_process(tmp_path_factory, data_dir, env):
  """An uninterrupted run that keeps a checkpoint of every step."""
  model_dir = tmp_path_factory.mktemp('one_process')
  bindings = _bindings(data_dir, **{'run.checkpoint_every_steps': 1,
                                    'run.keep_checkpoints': 20})
  result = runs.train(model_dir, bindings, '--strategy=cpu', *_TRAIN_ONLY,
                      env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def _assert_same_steps(model_dir, expected_dir):
  expected, measured = _losses(expected_dir), _losses(model_dir)
  assert sorted(measured) == sorted(expected) == list(range(2, STEPS + 1, 2))
  for step, loss in expected.items():
    assert abs(measured[step] - loss) <= LOSS_TOLERANCE, step
  assert runs.max_difference(runs.final_variables(model_dir),
                             runs.final_variables(expected_dir)
                             ) <= WEIGHT_TOLERANCE


def test_two_replicas_in_one_process_match_one_process(one_process, data_dir,
                                                       env, tmp_path):
  model_dir = tmp_path / 'two_replicas'
  result = subprocess.run(
      [sys.executable, '-m', 'tests.training.two_cpu_main',
       f'--model_dir={model_dir}', '--strategy=mirrored', *_TRAIN_ONLY]
      + [f'--gin_bindings={b}' for b in _bindings(data_dir)],
      env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'MirroredStrategy with 2 replica(s)' in result.stderr
  _assert_same_steps(model_dir, one_process)


@pytest.fixture(scope='module')
def two_workers(tmp_path_factory, env):
  """The README's `launch/multi_worker.sh --local=2` quickstart, 2 epochs.

  Its training split has 3 shards of 64 clips (`--shard_clips`' default),
  which do not divide among 2 workers; both workers start with an empty
  cache. The validation set's 64 clips in global batches of 9 end with a
  batch of 1.
  """
  root = tmp_path_factory.mktemp('two_workers')
  logs, model_dir = root / 'logs', root / 'run'
  result = subprocess.run(
      [os.path.join(runs.PROJECT_DIR, 'launch', 'multi_worker.sh'),
       '--local=2', f'--log_dir={logs}', '--', f'--model_dir={model_dir}',
       '--cluster_timeout=300']
      + [f'--gin_bindings={b}' for b in (
          'run.epochs = 2', 'run.verbose = 2', 'build_inputs.batch_size = 32',
          'build_inputs.image_size = 32', 'build_inputs.num_frames = 4',
          'build_inputs.eval_batch_size = 9')],
      env=env, capture_output=True, text=True, timeout=900)
  outputs = [(logs / f'worker-{i}.log').read_text() for i in range(2)]
  assert result.returncode == 0, '\n\n'.join(o[-3000:] for o in outputs)
  return model_dir, outputs


def test_every_worker_takes_the_same_steps_on_three_shards(two_workers):
  _, outputs = two_workers
  for output in outputs:  # 192 training clips, global batch 32: 6 steps
    assert len(re.findall(r'^6/6 - .* val_accuracy', output, re.M)) == 2
  # Without synchronized BatchNorm each worker keeps its own statistics.
  assert (_fingerprint(outputs[0], 'trainable weights')
          == _fingerprint(outputs[1], 'trainable weights'))


def test_one_worker_prepared_the_data(two_workers):
  # The other waited for it (or, slower to start, found it ready); the wait
  # itself is tested in tests/data/test_prepare_output_dir.py.
  _, outputs = two_workers
  assert sum('prepared 256 clips in 4 shards' in o for o in outputs) == 1


def test_only_the_chief_writes_model_dir(two_workers):
  model_dir, outputs = two_workers
  for name in ('run.json', 'operative_config.gin', 'best_model.keras',
               'final_model.keras', 'eval/metrics.json',
               'checkpoints/ckpt-12.index'):
    assert (model_dir / name).is_file(), name
  metrics = json.loads((model_dir / 'eval/metrics.json').read_text())
  assert metrics['num_clips'] == 64  # each test clip once, not per worker
  worker_dirs = re.findall(r'Saved (\S+)/final_model\.keras', outputs[1])
  assert worker_dirs and str(model_dir) not in worker_dirs[0]
  assert not os.path.exists(worker_dirs[0])  # removed at the end


def _wait_for_checkpoint_after(model_dir, step, workers, timeout=300):
  """Waits for a checkpoint numbered above `step` in `model_dir`."""
  deadline = time.monotonic() + timeout
  pattern = re.compile(r'ckpt-(\d+)\.index$')
  while True:
    names = os.listdir(model_dir / 'checkpoints') if (
        model_dir / 'checkpoints').is_dir() else []
    if any(int(m.group(1)) > step for m in map(pattern.search, names) if m):
      return
    assert all(w.poll() is None for w in workers), 'a worker exited first'
    assert time.monotonic() < deadline, f'no checkpoint after step {step}'
    time.sleep(0.05)


def _variables_at(model_dir, step):
  """Model and optimizer variables of checkpoint `step`."""
  reader = tf.train.load_checkpoint(str(model_dir / f'checkpoints/ckpt-{step}'))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith(('model/', 'optimizer/'))}


def test_two_workers_killed_preempted_and_resumed_match_one_process(
    one_process, data_dir, env, tmp_path):
  # The workers ask each other about SIGTERM every 3 steps (a collective op).
  bindings = _bindings(data_dir, **{'run.validate': False,
                                    'run.preemption_poll_steps': 3})
  model_dir = tmp_path / 'run'

  # A worker is killed: the other stops with a clear error, in bounded time.
  workers = _start_workers(model_dir, bindings, env, '--mode=train')
  _wait_for_checkpoint_after(model_dir, 0, workers)
  workers[1].kill()
  started = time.monotonic()
  workers[0].wait(timeout=LOST_WORKER_BOUND)
  stopped_after = time.monotonic() - started
  codes, outputs = _finish(workers)
  assert codes == [cluster.EXIT_CLUSTER_FAILURE, -signal.SIGKILL], (
      outputs[0][-3000:])
  assert 'movinet-train: error: lost contact with another worker' in (
      outputs[0]), outputs[0][-3000:]
  assert stopped_after < LOST_WORKER_BOUND
  resumed_from = int(tf.train.latest_checkpoint(
      str(model_dir / 'checkpoints')).rsplit('-', 1)[1])

  # Both started again resume; SIGTERM reaches one: both save the same step
  # and exit 75. Every step's loss and that step's state are those of one
  # process at the same global batch.
  workers = _start_workers(model_dir, bindings, env, '--mode=train')
  _wait_for_checkpoint_after(model_dir, resumed_from, workers)
  workers[1].send_signal(signal.SIGTERM)
  codes, outputs = _finish(workers)
  assert codes == [EXIT_PREEMPTED] * 2, '\n\n'.join(outputs)
  assert f'(global step {resumed_from})' in outputs[0]  # "Resuming at ..."
  steps = [int(re.search(r'Stopped by SIGTERM at global step (\d+)',
                         output).group(1)) for output in outputs]
  assert resumed_from < steps[0] == steps[1] < STEPS, (resumed_from, steps)
  assert steps[0] % 3 == 0, steps  # where they asked
  expected, measured = _losses(one_process), _losses(model_dir)
  assert sorted(measured) == [s for s in sorted(expected) if s <= steps[0]]
  for step, loss in measured.items():
    assert abs(loss - expected[step]) <= LOSS_TOLERANCE, step
  assert runs.max_difference(_variables_at(model_dir, steps[0]),
                             _variables_at(one_process, steps[0])
                             ) <= WEIGHT_TOLERANCE


def test_a_worker_alone_gives_up_after_the_cluster_timeout(data_dir, env,
                                                           tmp_path):
  ports = _free_ports(2)
  started = time.monotonic()
  result = subprocess.run(
      runs.command(tmp_path / 'run', _bindings(data_dir),
                   '--strategy=multi_worker',
                   f'--cluster_timeout={JOIN_TIMEOUT}'),
      env=dict(env, TF_CONFIG=_tf_config(ports, 0)), capture_output=True,
      text=True, timeout=JOIN_TIMEOUT + 120)
  assert result.returncode != 0
  assert time.monotonic() - started < JOIN_TIMEOUT + 60
  assert ('could not join the cluster 127.0.0.1:' in result.stderr
          and f'--cluster_timeout={JOIN_TIMEOUT} s' in result.stderr), (
              result.stderr[-3000:])
  assert not (tmp_path / 'run').exists()  # nothing written


@pytest.mark.parametrize('tf_config, problem', [
    ('{"cluster": ', 'is not valid JSON'),
    ('[]', 'is not a JSON object'),
    ('{"task": {"type": "worker", "index": 0}}', 'has no "cluster"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, '
     '"task": {"type": "worker", "index": 0}}', "has job(s) ['ps']"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
     'is not a list of "host:port"'),
    ('{"cluster": {"worker": ["a:1"]}}', 'has no "task"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", '
     '"index": 0}}', "task type 'chief' is not a job"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", '
     '"index": 2}}', 'task index 2 is not in 0..1'),
])
def test_a_wrong_tf_config_is_named(tf_config, problem):
  with pytest.raises(multi_worker.ClusterError, match=re.escape(problem)):
    multi_worker.check_tf_config(tf_config)


def test_a_wrong_tf_config_is_one_line_and_exit_1(data_dir, env, tmp_path):
  result = subprocess.run(
      runs.command(tmp_path / 'run', _bindings(data_dir),
                   '--strategy=multi_worker'),
      env=dict(env, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, '
               '"task": {"type": "worker", "index": 1}}'),
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines()
            if line.startswith('movinet-train: error:')]
  assert len(errors) == 1 and 'task index 1 is not in 0..0' in errors[0]
  assert not (tmp_path / 'run').exists()


def test_a_collective_out_of_step_is_one_line():
  # What TensorFlow 2.20 raised on a worker whose epoch had ended early,
  # before every worker took the same steps (the quickstart on 2 workers).
  error = tf.errors.InternalError(None, None, (
      '{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device'
      '_/job:worker/replica:0/task:1/device:CPU:0}} Collective ops is '
      'aborted by: Collective instance 1073 expected type 0 and data_type 9 '
      'but got type 0 and data_type 1\nAdditional GRPC error information '
      'from remote target /job:worker/replica:0/task:0 while calling '
      '/tensorflow.CollectiveService/...\nThe error could be from a '
      'previous operation. Restart your program to reset. '
      '[Op:CollectiveReduceV2] name: '))
  assert cluster.cluster_failure(error) == (
      'the workers fell out of step at a collective op (Collective instance '
      '1073 expected type 0 and data_type 9 but got type 0 and data_type 1); '
      'start every worker with the same command, gin files, data and '
      'version, then rerun them all to resume from the newest checkpoint')
  lost = cluster.cluster_failure(tf.errors.UnavailableError(
      None, None, 'Task unhealthy:\n/job:worker/replica:0/task:1\n'))
  assert lost.startswith('lost contact with another worker '
                         '(/job:worker/replica:0/task:1 stopped sending')
  assert cluster.cluster_failure(tf.errors.InvalidArgumentError(
      None, None, 'Shard x does not hold the 64 records')) is None


def test_a_slurm_allocation_gives_the_cluster(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  for name, value in {'SLURM_JOB_ID': '7', 'SLURM_PROCID': '1',
                      'SLURM_STEP_NUM_TASKS': '2',
                      'SLURM_STEP_NODELIST': 'node[1-2]',
                      'SLURM_STEP_TASKS_PER_NODE': '1(x2)'}.items():
    monkeypatch.setenv(name, value)
  resolver = multi_worker.cluster_resolver()
  assert resolver.cluster_spec().as_dict() == {
      'worker': ['node1:8888', 'node2:8888']}
  assert (resolver.task_type, resolver.task_id) == ('worker', 1)


def test_no_cluster_description_is_named(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  monkeypatch.delenv('SLURM_JOB_ID', raising=False)
  with pytest.raises(multi_worker.ClusterError, match='needs TF_CONFIG'):
    multi_worker.cluster_resolver()
