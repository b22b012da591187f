"""movinet-train on TensorFlow's in-memory `ram://` filesystem, in one process.

`ram://` exists only in this process's memory, so the whole scenario runs
here: the prepared dataset is copied into `ram://` with `tf.io.gfile`, then
movinet-train's `main` trains in a `ram://` model_dir and is run again (a
resume to more steps, then `--mode=eval`), and finally one JSON line on
stdout lists every file under the `ram://` model_dir with its size.

  python -m tests.training.ram_main LOCAL_DATA_DIR RAM_ROOT \
      [--gin_bindings=...]...

The data goes to `RAM_ROOT/data` (bind `build_inputs.data_dir` to it) and the
run to `RAM_ROOT/run`. The flags after RAM_ROOT are passed to every run; the
first run adds `run.train_steps=2`, the second `run.train_steps=4`, the third
(`--mode=eval`, after `eval/metrics.json` is removed) `run.train_steps=4`.
"""

import json
import os
import sys

from absl import app
from absl import flags
import gin
import tensorflow as tf

RESULT_PREFIX = 'RAM_LISTING '


def copy_tree(source: str, target: str) -> None:
  """Copies a local directory tree into `target` with tf.io.gfile."""
  for root, _, names in tf.io.gfile.walk(source):
    relative = os.path.relpath(root, source)
    directory = target if relative == '.' else f'{target}/{relative}'
    tf.io.gfile.makedirs(directory)
    for name in names:
      tf.io.gfile.copy(os.path.join(root, name), f'{directory}/{name}',
                       overwrite=True)


def listing(directory: str) -> dict[str, int]:
  """Every file under `directory`, by relative path, with its size."""
  found = {}
  for root, _, names in tf.io.gfile.walk(directory):
    for name in names:
      path = f'{root.rstrip("/")}/{name}'
      found[path[len(directory) + 1:]] = tf.io.gfile.stat(path).length
  return found


def run_main(argv: list[str]) -> None:
  """movinet-train's main on `argv`, as a fresh command would run it."""
  from trainer import main  # pylint: disable=import-outside-toplevel
  gin.clear_config()
  flags.FLAGS.unparse_flags()
  try:
    app.run(main.main, argv=argv)
  except SystemExit as exit_:
    if exit_.code not in (None, 0):
      raise


def scenario(local_data: str, ram_root: str, passed: list[str]) -> dict:
  """Trains, resumes and evaluates in ram://; returns what it holds."""
  data_dir, model_dir = f'{ram_root}/data', f'{ram_root}/run'
  copy_tree(local_data, data_dir)
  # --verbosity=0 (INFO) explicitly: absl's app.run turns INFO on only in
  # its first call of a process.
  common = ['movinet-train', f'--model_dir={model_dir}', '--verbosity=0',
            *passed]
  run_main(common + ['--gin_bindings=run.train_steps = 2'])
  run_main(common + ['--gin_bindings=run.train_steps = 4'])
  metrics_path = f'{model_dir}/eval/metrics.json'
  with tf.io.gfile.GFile(metrics_path) as f:
    trained_metrics = json.load(f)
  tf.io.gfile.remove(metrics_path)
  run_main(common + ['--gin_bindings=run.train_steps = 4', '--mode=eval'])
  with tf.io.gfile.GFile(metrics_path) as f:
    eval_metrics = json.load(f)
  return {'files': listing(model_dir),
          'eval_matches_training': eval_metrics == trained_metrics}


if __name__ == '__main__':
  result = scenario(sys.argv[1], sys.argv[2], sys.argv[3:])
  sys.stdout.write(RESULT_PREFIX + json.dumps(result) + '\n')
