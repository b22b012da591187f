"""Per-frame latency of a stream MoViNet: the official model and our exports.

Batch 1, one frame per call at `--image_size` (default 172), one thread
(TensorFlow's intra- and inter-op pools and the TFLite interpreter), states
carried from frame to frame as a streaming app carries them, random weights,
600 classes. In one process, in rounds that take each runner in turn:

  - official: tf-models-official's stream `MovinetClassifier` (tf_keras,
    external states) in a `tf.function`;
  - ours, TF: our Keras 3 model in a `tf.function` over the state dict
    (`trainer.export.saved_model.StreamModule.call`, fixed shapes);
  - ours, SavedModel: `signatures['call']` of our exported SavedModel, as
    the official notebooks call it;
  - ours, TFLite float32, float16 and int8: our `model.tflite` and its
    quantized versions, as the official README runs them
    (`trainer.export.tflite`); int8 calibrated on 4 clips of 8 frames of
    the synthetic videos (textured background, moving shapes).

The frames fed are those of a synthetic video at `--image_size`, in turn.

Each runner's first `--warmup` frames (tracing, graph optimisation, XNNPACK
set-up) are left out; the median over `--rounds` of the mean time of
`--frames` frames is reported, with the speed-up over the official model.
Model building, export and conversion times are printed apart.

  PYTHONPATH=. python benchmarks/stream_latency.py [--model_id=a0]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads.

# pylint: disable=wrong-import-position
import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import tf_keras  # noqa: E402
from official.projects.movinet.modeling import movinet, movinet_model  # noqa: E402

from trainer.data import synthetic  # noqa: E402
from trainer.export import saved_model  # noqa: E402
from trainer.export import tflite  # noqa: E402
from trainer.model import build_movinet_classifier  # noqa: E402
# pylint: enable=wrong-import-position

NUM_CLASSES = 600
QUANTIZATIONS = ('float32', 'float16', 'int8')
STREAM = dict(causal=True, conv_type='2plus1d', se_type='2plus3d',
              activation='hard_swish', gating_activation='hard_sigmoid')


def _official(model_id: str, size: int):
  """A step function over (states, frame) of the official stream model."""
  tf_keras.utils.set_random_seed(0)
  backbone = movinet.Movinet(
      model_id=model_id, use_external_states=True,
      use_positional_encoding=model_id in ('a3', 'a4', 'a5'), **STREAM)
  model = movinet_model.MovinetClassifier(backbone, num_classes=NUM_CLASSES,
                                          output_states=True)
  model.build([1, 1, size, size, 3])
  call = tf.function(lambda inputs: model(inputs, training=False))

  def step(states, frame):
    logits, states = call({**states, 'image': frame})
    return logits, states

  return step, model.init_states(tf.constant([1, 1, size, size, 3]))


def _ours(model, size: int):
  """A step function of our Keras model in a tf.function, and its states."""
  module = saved_model.StreamModule(model, (1, 1, size, size, 3))

  def step(states, frame):
    outputs = dict(module.call({**states, 'image': frame}))
    return outputs.pop('logits'), outputs

  return step, model.init_states((1, 1, size, size, 3))


def _saved(model, size: int, directory: str):
  """A step function of our exported SavedModel, and its zero states."""
  path = os.path.join(directory, 'saved_model')
  saved_model.export(model, path)
  loaded = tf.saved_model.load(path)
  call = loaded.signatures['call']

  def step(states, frame):
    outputs = call(**states, image=frame)
    return outputs.pop('logits'), outputs

  return step, loaded.signatures['init_states'](
      tf.constant([1, 1, size, size, 3]))


def _video(size: int, seed: int, frames: int = 8) -> np.ndarray:
  """A synthetic video `(1, frames, size, size, 3)` in [0, 1]."""
  video = synthetic.frames_for(seed % 4, synthetic.video_rng(seed, 0, 0),
                               frames, (size, size))
  return (video[None] / 255.0).astype(np.float32)


def _tflite(model_content: bytes):
  """A step function of a TFLite stream model, and its zero states."""
  interpreter = tf.lite.Interpreter(model_content=model_content,
                                    num_threads=1)
  runner = interpreter.get_signature_runner()

  def step(states, frame):
    outputs = runner(**states, image=frame)
    return outputs.pop('logits'), outputs

  states = {name: np.zeros(detail['shape'], detail['dtype'])
            for name, detail in runner.get_input_details().items()
            if name != 'image'}
  return step, states


def _mean_ms(step, states, video, frames: int):
  """Mean ms of `frames` steps over the frames of `video` in turn, states
  carried; and the last states."""
  start = time.perf_counter()
  for index in range(frames):
    _, states = step(states, video[:, index % video.shape[1]][:, None])
  return (time.perf_counter() - start) * 1e3 / frames, states


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model_id', default='a0')
  parser.add_argument('--image_size', type=int, default=172)
  parser.add_argument('--frames', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  size = args.image_size
  video = _video(size, seed=7)
  model = build_movinet_classifier(args.model_id, NUM_CLASSES, stream=True)
  runners = {}
  with tempfile.TemporaryDirectory() as scratch:
    for name, make in (
        ('official (TF)', lambda: _official(args.model_id, size)),
        ('ours (TF)', lambda: _ours(model, size)),
        ('ours (SavedModel)', lambda: _saved(model, size, scratch))):
      start = time.perf_counter()
      runners[name] = make()
      print(f'{name}: built or exported in {time.perf_counter() - start:.1f} '
            's', flush=True)
    start = time.perf_counter()
    models = tflite.convert(model, size, quantizations=QUANTIZATIONS,
                            calibration=[_video(size, seed)
                                         for seed in range(4)])
    print(f'TFLite {", ".join(QUANTIZATIONS)}: converted in '
          f'{time.perf_counter() - start:.1f} s', flush=True)
    for quantization, model_content in models.items():
      runners[f'ours (TFLite {quantization})'] = _tflite(model_content)
    states = {name: runner[1] for name, runner in runners.items()}
    times = {name: [] for name in runners}
    for name, (step, _) in runners.items():
      _, states[name] = _mean_ms(step, states[name], video, args.warmup)
    for _ in range(args.rounds):
      for name, (step, _) in runners.items():
        milliseconds, states[name] = _mean_ms(step, states[name], video,
                                              args.frames)
        times[name].append(milliseconds)
  official = statistics.median(times['official (TF)'])
  print(f'\n{args.model_id} stream, {size}x{size}, batch 1, one thread, '
        f'median of {args.rounds} x {args.frames} frames:')
  print(f'{"":26s} {"ms/frame":>9s} {"speed-up over official":>24s}')
  for name, values in times.items():
    median = statistics.median(values)
    print(f'{name:26s} {median:9.2f} {official / median:23.2f}x')


if __name__ == '__main__':
  main()
