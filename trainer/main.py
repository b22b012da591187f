r"""movinet-train: flags -> gin -> typed config -> cluster -> `training.run`.

Flags set up the infrastructure only; everything about the experiment is a
gin binding (see `gin/`), made into a typed `ExperimentConfig` here
(`trainer.configure`) before anything else starts. Without `--gin_file` the
quickstart runs: the synthetic dataset, prepared into the cache on first use.

One device (CPU or one GPU):
  movinet-train --model_dir=/tmp/quickstart

UCF101 transfer learning on all local GPUs:
  movinet-train --gin_file=ucf101_a0_transfer.gin \
    --gin_file=platforms/multi_gpu.gin --strategy=mirrored \
    --gin_bindings="DATA_DIR='/data/ucf101_10'" --model_dir=/tmp/ucf101_a0

A Cloud TPU VM:
  movinet-train --gin_file=ucf101_a0_transfer.gin --gin_file=platforms/tpu.gin \
    --strategy=tpu --tpu=local --gin_bindings="DATA_DIR='gs://b/ucf101_10'" \
    --model_dir=gs://b/runs/ucf101_a0

Several machines (the same command on each; TF_CONFIG names the cluster
and each machine's task; launch/multi_worker.sh writes it):
  TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
    "task": {"type": "worker", "index": 0}}' \
  movinet-train --strategy=multi_worker --gin_file=ucf101_a0_transfer.gin \
    --gin_file=platforms/multi_gpu.gin \
    --gin_bindings="DATA_DIR='gs://b/ucf101_10'" --model_dir=gs://b/runs/mw

Rerunning a command with the same --model_dir resumes it. `--gin_file` is
looked up as given, then among the gin files installed with the package (the
project's `gin/` directory).

Exit status: 0 done; 1 bad input (one line on stderr says what to change);
69 (EX_UNAVAILABLE) another worker died or cannot be reached: restart all
workers to resume; 75 (EX_TEMPFAIL) stopped by SIGTERM after saving a
checkpoint: rerun to resume. A worker that cannot join the cluster within
--cluster_timeout seconds says so and is killed (SIGKILL).
"""

import importlib.resources
import logging as std_logging
import os
import re
import sys

# Before TensorFlow loads: its C++ INFO lines would drown the progress bar.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=wrong-import-position
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from trainer import command_line
from trainer import configure
from trainer import settings
from trainer import training
# pylint: enable=wrong-import-position


def _find_gin_dir() -> str:
  """The project's `gin/` folder: installed with the package as
  `trainer/configs`, or beside the package in a source checkout (which an
  editable install runs from)."""
  packaged = importlib.resources.files('trainer') / 'configs'
  if packaged.is_dir():
    return str(packaged)
  return os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'gin')


GIN_DIR = _find_gin_dir()
DEFAULT_GIN_FILE = 'quickstart.gin'
EXIT_BAD_INPUT = 1

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', None, 'gin config files, applied in '
                          f'order (default: {DEFAULT_GIN_FILE}).')
flags.DEFINE_multi_string('gin_bindings', [], 'gin bindings applied after '
                          "the files, e.g. \"build_inputs.batch_size=16\".")
flags.DEFINE_string('model_dir', None, 'Directory (or gs:// path) for '
                    'checkpoints, summaries and the exported model.')
flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval',
                                             'train_and_eval'],
                  'Train, evaluate the newest checkpoint, or both.')
flags.DEFINE_string('strategy', 'auto', 'One of: '
                    f'{", ".join(training.STRATEGIES)}.')
flags.DEFINE_string('tpu', None, "TPU name or address ('local' on a TPU VM).")
flags.DEFINE_float('cluster_timeout', training.DEFAULT_CLUSTER_TIMEOUT,
                   'Seconds --strategy=multi_worker waits for all workers '
                   'to join.')
flags.mark_flag_as_required('model_dir')


def resolve_gin_file(name: str) -> str:
  """`name` if it exists, else the file of that name in the `gin/` dir."""
  if os.path.exists(name) or '://' in name:
    return name
  candidate = os.path.join(GIN_DIR, name)
  if os.path.exists(candidate):
    return candidate
  raise ValueError(f'--gin_file={name!r} does not exist, neither as given '
                   f'nor in {GIN_DIR}.')


# How TensorFlow reports a failed `tf.debugging.Assert` of the input
# pipeline: its message (the line up to `]`), then the op's context.
_FAILED_ASSERTION = re.compile(r'assertion failed: \[(.+)\]\s*$', re.M)


def one_line(error: BaseException) -> str:
  """The error's message without gin's call-site annotations.

  A failed assertion of the input pipeline (a corrupted shard, a label
  outside the manifest's; see `trainer.data.pipeline`) gives only its own
  message, without TensorFlow's op and graph context.
  """
  if isinstance(error, tf.errors.OpError):
    assertion = _FAILED_ASSERTION.search(str(error))
    if assertion:
      return assertion.group(1).strip()
  lines = [line.strip() for line in str(error).splitlines()
           if line.strip() and not line.strip().startswith('In call to ')
           and not line.strip().startswith('In file ')]
  return ' '.join(lines) or type(error).__name__


class _HideTensorFlowInfo(std_logging.Filter):
  """Drops TensorFlow's own INFO lines (one per checkpoint save), which
  would interleave with the progress bar; its warnings stay."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno > std_logging.INFO
            or f'{os.sep}tensorflow{os.sep}' not in record.pathname)


def _hint(error: BaseException) -> str:
  """How to fix gin's errors about required values, which gin leaves out."""
  message = str(error)
  if '%gin.REQUIRED' in message and 'macro.value' in message:
    macro = message.partition('/macro.value')[0].split()[-1]
    return f'; bind it, e.g. --gin_bindings="{macro}=\'...\'"'
  if 'Required bindings' in message:
    return '; add the missing binding to a --gin_file or --gin_bindings'
  return ''


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_HideTensorFlowInfo())
  cluster = None
  try:
    tf.get_logger().setLevel('WARNING')
    gin_files = [resolve_gin_file(f)
                 for f in FLAGS.gin_file or [DEFAULT_GIN_FILE]]
    config = configure.experiment_config(gin_files, FLAGS.gin_bindings,
                                         search_paths=[GIN_DIR])
    cluster = training.Cluster.connect(FLAGS.strategy, FLAGS.tpu,
                                       FLAGS.cluster_timeout)
    training.run(config, cluster, FLAGS.model_dir, FLAGS.mode,
                 config_text=configure.operative_config())
  except training.Preempted as preempted:
    logging.warning('%s', preempted)
    sys.exit(preempted.exit_status)
  except (ValueError, OSError, tf.errors.OpError, RuntimeError) as error:
    if isinstance(error, RuntimeError) and 'Required bindings' not in str(
        error):
      raise  # not a configuration problem: keep the traceback
    logging.debug('Details:', exc_info=True)
    cluster_error = cluster.failure(error) if cluster else None
    if cluster_error:
      sys.stderr.write(f'movinet-train: error: {cluster_error}\n')
      sys.exit(training.EXIT_CLUSTER_FAILURE)
    if isinstance(error, settings.SettingError):
      error = configure.setting_error(error)
    sys.stderr.write(f'movinet-train: error: {one_line(error).rstrip(".")}'
                     f'{_hint(error)}'
                     ' (--verbosity=1 shows where)\n')
    sys.exit(EXIT_BAD_INPUT)


def run() -> None:
  """Console-script entry point."""
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
