"""Training-step and inference speed of this MoViNet against the official one.

Builds `trainer.model.build_movinet_classifier` (Keras 3) and the
tf-models-official `MovinetClassifier` (tf_keras) for the same model id and
600 classes, feeds both the same random clips (uniform [0, 1], float32) and
labels, and times, in one process and interleaved (ours, official, ours, ...):

  - train: one `tf.function` step (no XLA): forward with `training=True`,
    mean sparse softmax cross-entropy from logits, gradients over the
    trainable variables, one Adam(1e-3) update (Keras 3's for ours,
    tf_keras' for the official model);
  - infer: a `tf.function` of `model(x, training=False)`.

The first `--warmup` calls (tracing and graph optimisation included) are
timed apart and left out of the throughput. Prints seconds per step and
clips per second for each model and mode, and the ratios ours / official.

Command (repository root; ~5 minutes for the defaults on a 2-core CPU, where
the official a0 train step at batch 8 takes about a minute):

  PYTHONPATH=. python benchmarks/model_speed.py
  PYTHONPATH=. python benchmarks/model_speed.py --stream --batch 2 --steps 2
"""

import argparse
import os
import statistics
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# pylint: disable=wrong-import-position
import keras
import tensorflow as tf
import tf_keras
from official.projects.movinet.modeling import movinet, movinet_model

from trainer.model import build_movinet_classifier
# pylint: enable=wrong-import-position

NUM_CLASSES = 600
STREAM_RECIPE = dict(causal=True, conv_type='2plus1d', se_type='2plus3d',
                     activation='hard_swish', gating_activation='hard_sigmoid')
POSITIONAL_ENCODING_MODELS = ('a3', 'a4', 'a5')


def parse_args():
  """The command line, with this module's first docstring line as help."""
  parser = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
  parser.add_argument('--model_id', default='a0', help="'a0'..'a5' or 't0'.")
  parser.add_argument('--batch', type=int, default=8, help='clips per step')
  parser.add_argument('--frames', type=int, default=8, help='frames per clip')
  parser.add_argument('--size', type=int, default=172,
                      help='frame height and width, pixels')
  parser.add_argument('--stream', action='store_true',
                      help='the streaming recipe (causal, 2plus1d); '
                      'default: the base model')
  parser.add_argument('--steps', type=int, default=3, help='timed steps')
  parser.add_argument('--warmup', type=int, default=1,
                      help='untimed steps before the timed ones (>= 1)')
  args = parser.parse_args()
  for name in ('batch', 'frames', 'size', 'steps', 'warmup'):
    if getattr(args, name) < 1:
      parser.error(f'--{name}={getattr(args, name)} must be >= 1.')
  return args


def build_ours(args):
  return build_movinet_classifier(args.model_id, num_classes=NUM_CLASSES,
                                  stream=args.stream)


def build_official(args):
  recipe = {}
  if args.stream:
    recipe = dict(STREAM_RECIPE, use_positional_encoding=(
        args.model_id in POSITIONAL_ENCODING_MODELS))
  backbone = movinet.Movinet(model_id=args.model_id, **recipe)
  model = movinet_model.MovinetClassifier(backbone, num_classes=NUM_CLASSES)
  model.build([args.batch, args.frames, args.size, args.size, 3])
  return model


def make_steps(model, optimizer):
  """Returns `(train_step, infer_step)`, both `tf.function`s of a batch."""
  variables = model.trainable_variables
  if isinstance(optimizer, keras.optimizers.Optimizer):
    optimizer.build(variables)  # Keras 3: create slots outside the graph.

  @tf.function
  def train_step(videos, labels):
    with tf.GradientTape() as tape:
      logits = model(videos, training=True)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  @tf.function
  def infer_step(videos):
    return model(videos, training=False)

  return train_step, infer_step


def timed(fn, *inputs):
  """Seconds for one call of `fn`, waiting for its result."""
  start = time.perf_counter()
  tf.nest.map_structure(lambda t: t.numpy(), fn(*inputs))
  return time.perf_counter() - start


def main():
  args = parse_args()
  start = time.perf_counter()
  shape = (args.batch, args.frames, args.size, args.size, 3)
  videos = tf.random.uniform(shape, 0.0, 1.0, tf.float32, seed=0)
  labels = tf.random.uniform((args.batch,), 0, NUM_CLASSES, tf.int32, seed=1)
  models = {
      'ours': make_steps(build_ours(args), keras.optimizers.Adam(1e-3)),
      'official': make_steps(build_official(args),
                             tf_keras.optimizers.Adam(1e-3)),
  }
  modes = {'train': (0, (videos, labels)), 'infer': (1, (videos,))}
  warmup = {}
  times = {(name, mode): [] for name in models for mode in modes}
  for mode, (index, inputs) in modes.items():
    for name, steps in models.items():
      warmup[name, mode] = sum(timed(steps[index], *inputs)
                               for _ in range(args.warmup))
      print(f'warm-up {name:8s} {mode}: {warmup[name, mode]:.1f} s',
            flush=True)
    for _ in range(args.steps):  # Interleaved against load drift.
      for name, steps in models.items():
        times[name, mode].append(timed(steps[index], *inputs))

  recipe = 'stream' if args.stream else 'base'
  print(f'\nMoViNet {args.model_id} {recipe}, batch {args.batch} x '
        f'{args.frames} x {args.size} x {args.size} x 3, '
        f'{args.steps} timed step(s) after {args.warmup} warm-up, '
        f'{tf.config.threading.get_intra_op_parallelism_threads() or "all"} '
        'intra-op threads')
  header = (f'{"model":9s} {"mode":6s} {"warm-up s":>10s} {"s/step":>9s} '
            f'{"min s":>9s} {"clips/s":>9s}')
  print(header)
  print('-' * len(header))
  rate = {}
  for mode in modes:
    for name in models:
      mean = statistics.mean(times[name, mode])
      rate[name, mode] = args.batch / mean
      print(f'{name:9s} {mode:6s} {warmup[name, mode]:10.2f} {mean:9.3f} '
            f'{min(times[name, mode]):9.3f} {rate[name, mode]:9.2f}')
  print()
  for mode in modes:
    ratio = rate['ours', mode] / rate['official', mode]
    print(f'{mode} ratio (ours/official): {ratio:.1f}x')
  print(f'\ntotal run time: {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
  main()
