"""Quantized TFLite exports: float16, dynamic range and int8 calibrated on
a prepared split of real (synthetic, MJPEG-encoded) videos.

The int8 top-1 agreement of a trained model is checked where a trained model
is: tests/training/test_export_round_trip.py. Here the weights are random,
so what is checked is what quantization must not break: the signature (the
same state names, shapes and dtypes as float32), the frame counters, logits
near the float ones, builtin ops only, and a mixed-precision model exported
in float32.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training import run_helpers
from trainer.data.sampling import ClipSampling
from trainer.export import calibration
from trainer.export import exporter
from trainer.model import build_movinet_classifier

pytestmark = pytest.mark.slow(minutes=0.5)  # the module, on 2 cores

FRAMES, SIZE = 4, 32
SAMPLING = ClipSampling(num_frames=FRAMES, frame_step=2, image_size=SIZE)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """4 classes x (2 train + 1 test) synthetic videos, prepared."""
  return run_helpers.prepare_tiny(tmp_path_factory.mktemp('data'),
                                  splits='train:2,test:1')


@pytest.fixture(scope='module')
def stream_export(prepared, tmp_path_factory):
  model = build_movinet_classifier('a0', 4, stream=True)
  clips = calibration.read_clips(prepared, 'train', 8, SAMPLING, SIZE)
  out = tmp_path_factory.mktemp('export') / 'a0_stream'
  info = exporter.export(
      model, ['a', 'b', 'c', 'd'], str(out), image_size=SIZE,
      sampling=SAMPLING, calibration=clips,
      quantizations=('int8', 'float16', 'dynamic_range'))
  return model, clips, out, info


def _run_stream(path, clip):
  """The official README's loop over `clip`; the last logits and states."""
  runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner()
  states = {name: np.zeros(detail['shape'], dtype=detail['dtype'])
            for name, detail in runner.get_input_details().items()
            if name != 'image'}
  for frame in range(clip.shape[1]):
    outputs = runner(**states, image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  return logits, states


def _signature(path):
  runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner()
  return {name: (tuple(detail['shape']), detail['dtype'])
          for details in (runner.get_input_details(),
                          runner.get_output_details())
          for name, detail in details.items()}


def test_calibration_clips_come_from_the_split(prepared):
  clips = calibration.read_clips(prepared, 'train', 100, SAMPLING, SIZE)
  # 4 classes x 2 videos, one clip each, fewer than asked.
  assert len(clips.clips) == 8
  assert sorted(clips.labels) == [0, 0, 1, 1, 2, 2, 3, 3]
  assert {clip.shape for clip in clips.clips} == {(1, FRAMES, SIZE, SIZE, 3)}
  assert all(0 <= clip.min() and clip.max() <= 1 for clip in clips.clips)
  with pytest.raises(ValueError, match='--calibration_split'):
    calibration.read_clips(prepared, 'validation', 4, SAMPLING, SIZE)


def test_every_quantization_keeps_the_stream_signature(stream_export):
  model, clips, out, info = stream_export
  assert info.tflite == {'float32': 'model.tflite',
                         'float16': 'model_float16.tflite',
                         'dynamic_range': 'model_dynamic_range.tflite',
                         'int8': 'model_int8.tflite'}
  assert exporter.read_info(str(out)) == info
  assert json.loads((out / 'export.json').read_text())['sampling'] == (
      SAMPLING.to_json())
  assert info.parity['tflite_float16'] <= 1e-2
  assert 0 <= info.parity['tflite_int8_top1_agreement'] <= 1
  float_signature = _signature(out / 'model.tflite')
  clip = clips.clips[0]
  expected = model(clip, training=False).numpy()
  for name in info.tflite.values():
    assert _signature(out / name) == float_signature, name
    assert not {op['op_name'] for op in tf.lite.Interpreter(
        model_path=str(out / name))._get_ops_details()
                if op['op_name'].startswith('Flex')
                or op['op_name'] == 'CUSTOM'}, name
    logits, states = _run_stream(out / name, clip)
    assert {int(value[0]) for key, value in states.items()
            if 'frame_count' in key} == {FRAMES}, name
    # Within a tenth of the logits' spread of the float model.
    assert np.abs(logits - expected).max() <= 0.1 * np.ptp(expected) + 1e-3, (
        name)


def test_int8_needs_calibration_clips(tmp_path):
  model = build_movinet_classifier('t0', 2)
  with pytest.raises(ValueError, match='--calibration_data'):
    exporter.export(model, ['a', 'b'], str(tmp_path / 'out'),
                    image_size=SIZE, num_frames=FRAMES,
                    quantizations=('int8',))
  assert not (tmp_path / 'out').exists()


def test_a_mixed_precision_model_exports_in_float32():
  keras.mixed_precision.set_dtype_policy('mixed_float16')
  try:
    mixed = build_movinet_classifier('t0', 2)
  finally:
    keras.mixed_precision.set_dtype_policy('float32')
  exported = exporter.as_float32(mixed)
  assert mixed.compute_dtype == 'float16'
  assert exported.compute_dtype == 'float32'
  assert all(layer.compute_dtype == 'float32'
             for layer in exported._flatten_layers())
  same = build_movinet_classifier('t0', 2)
  same.set_weights(mixed.get_weights())
  clip = np.random.default_rng(0).uniform(
      size=(1, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(exported(clip)),
                                np.asarray(same(clip)))
