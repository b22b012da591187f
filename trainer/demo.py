"""A first look at the model: build a MoViNet, run a clip whole and streamed.

  movinet-demo --model_id=a0 --stream
  movinet-demo --model_id=a2 --checkpoint=movinet_a2_stream.tar.gz --stream

Prints the parameter count, the top-5 classes of a random clip, and, for a
stream model, how far frame-by-frame logits are from whole-clip logits.
"""

import os
import time

# Before TensorFlow loads: its C++ INFO lines would come before --help.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=wrong-import-position
from absl import flags
from absl import logging
import numpy as np

from trainer import command_line
from trainer.model import (MODEL_IDS, build_movinet_classifier,
                           load_official_checkpoint)
# pylint: enable=wrong-import-position

_MODEL_ID = flags.DEFINE_enum('model_id', 'a0', MODEL_IDS, 'MoViNet variant.')
_STREAM = flags.DEFINE_bool('stream', True, 'Use the streaming recipe.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 600, 'Output classes.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None,
    'Official checkpoint (directory, .tar.gz or URL) to load; random weights '
    'when unset.')
_FRAMES = flags.DEFINE_integer('frames', 8, 'Clip length, frames.')
_SIZE = flags.DEFINE_integer('size', 172, 'Frame height and width, pixels.')


def main(argv):
  del argv
  model = build_movinet_classifier(_MODEL_ID.value, _NUM_CLASSES.value,
                                   stream=_STREAM.value)
  if _CHECKPOINT.value:
    load_official_checkpoint(model, _CHECKPOINT.value)
  logging.info('MoViNet-%s %s: %d parameters.', _MODEL_ID.value,
               'stream' if _STREAM.value else 'base', model.count_params())
  shape = (1, _FRAMES.value, _SIZE.value, _SIZE.value, 3)
  video = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)

  start = time.perf_counter()
  logits = np.asarray(model(video, training=False))[0]
  logging.info('Whole clip %s in %.2f s; top-5 classes %s.', shape,
               time.perf_counter() - start, np.argsort(logits)[::-1][:5])
  if _STREAM.value:
    states = model.init_states((1, 1, _SIZE.value, _SIZE.value, 3))
    start = time.perf_counter()
    for frame in range(_FRAMES.value):
      streamed, states = model(
          {**states, 'image': video[:, frame:frame + 1]}, training=False)
    difference = np.abs(np.asarray(streamed)[0] - logits).max()
    logging.info('Frame by frame in %.2f s; max |streamed - whole| = %.2e.',
                 time.perf_counter() - start, difference)


def run():
  command_line.run_command(main, __name__)


if __name__ == '__main__':
  run()
