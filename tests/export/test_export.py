"""Export: SavedModel and TFLite with the official signatures, float and
quantized, measured against the Keras model (random weights, 32 x 32 frames).

The loops are the official ones: the stream SavedModel as the official
notebooks call it (`signatures['init_states']`, then `signatures['call']`
per frame), the stream TFLite as the official README runs it (zero states
from the signature's input details, `outputs = runner(**states,
image=frame)`, `logits = outputs.pop('logits')`, `states = outputs`).

int8 calibrates on a prepared split of synthetic videos (MJPEG-encoded by
`movinet-prepare`'s synthetic source). The weights here are random, so what
is checked of quantization is what it must not break: the signature (the
same state names, shapes and dtypes as float32), the frame counters, logits
near the float ones, builtin ops only; the int8 top-1 agreement of a trained
model is checked where a trained model is
(tests/training/test_export_round_trip.py).
"""

import dataclasses
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.shared_export import EXPORT_GROUP
from tests.shared_export import LABELS
from tests.shared_export import SAMPLING
from tests.shared_export import SIZE
from trainer.data.sampling import ClipSampling
from trainer.export import calibration
from trainer.export import exporter
from trainer.export import tflite
from trainer.model import build_movinet_classifier

XDIST_GROUP = EXPORT_GROUP  # the stream export is shared with inference
pytestmark = pytest.mark.slow(minutes=0.9)  # the module, on 2 cores

FRAMES = SAMPLING.num_frames
# The exporter's bounds (issue: SavedModel vs Keras, TFLite float32 frame by
# frame vs Keras on the whole clip, float16).
SAVED_MODEL_BOUND, TFLITE_BOUND, FLOAT16_BOUND = 1e-5, 1e-4, 1e-2


@pytest.fixture(scope='module')
def clip():
  return np.random.default_rng(0).uniform(
      size=(1, FRAMES, SIZE, SIZE, 3)).astype(np.float32)


def _flex_ops(path) -> set[str]:
  """The ops of a TFLite model that are not builtins (a Flex op shows as
  `FlexXxx` or `CUSTOM`)."""
  interpreter = tf.lite.Interpreter(model_path=str(path))
  return {op['op_name'] for op in interpreter._get_ops_details()
          if op['op_name'].startswith('Flex') or op['op_name'] == 'CUSTOM'}


def _readme_loop(path, clip):
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


def test_stream_saved_model_runs_the_official_notebook_loop(stream_export,
                                                            clip):
  keras_model, out = stream_export.model, pathlib.Path(stream_export.path)
  model = tf.saved_model.load(str(out / 'saved_model'))
  assert set(model.signatures) == {'init_states', 'call'}
  states = model.signatures['init_states'](tf.shape(clip))
  assert set(states) == set(keras_model.init_states(clip.shape))
  for frame in range(FRAMES):
    outputs = model.signatures['call'](**states,
                                       image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  expected = keras_model(clip, training=False).numpy()
  assert np.abs(logits.numpy() - expected).max() <= SAVED_MODEL_BOUND


def test_stream_tflite_runs_the_official_readme_loop(stream_export, clip):
  keras_model, out = stream_export.model, pathlib.Path(stream_export.path)
  info = stream_export.info
  runner = tf.lite.Interpreter(
      model_path=str(out / 'model.tflite')).get_signature_runner()
  assert set(runner.get_input_details()) == {
      'image', *keras_model.init_states(clip.shape)}
  logits, states = _readme_loop(out / 'model.tflite', clip)
  expected = keras_model(clip, training=False).numpy()
  assert np.abs(logits - expected).max() <= TFLITE_BOUND
  # Frame counters count: every pool saw each frame.
  assert {int(v[0]) for k, v in states.items() if 'frame_count' in k} == {
      FRAMES}
  assert info.parity['saved_model'] <= SAVED_MODEL_BOUND
  assert info.parity['tflite'] <= TFLITE_BOUND


def test_every_quantization_keeps_the_stream_signature(stream_export):
  model, out = stream_export.model, pathlib.Path(stream_export.path)
  info, clips = stream_export.info, stream_export.calibration
  assert info.tflite == {'float32': 'model.tflite',
                         'float16': 'model_float16.tflite',
                         'dynamic_range': 'model_dynamic_range.tflite',
                         'int8': 'model_int8.tflite'}
  assert exporter.read_info(str(out)) == info
  assert json.loads((out / 'export.json').read_text())['sampling'] == (
      SAMPLING.to_json())
  assert info.parity['tflite_float16'] <= FLOAT16_BOUND
  assert 0 <= info.parity['tflite_int8_top1_agreement'] <= 1
  float_signature = _signature(out / 'model.tflite')
  # A clip of the videos calibrated on (int8's ranges are theirs).
  clip = clips.clips[0]
  expected = model(clip, training=False).numpy()
  for name in info.tflite.values():
    assert _signature(out / name) == float_signature, name
    assert not _flex_ops(out / name), name
    logits, states = _readme_loop(out / name, clip)
    assert {int(value[0]) for key, value in states.items()
            if 'frame_count' in key} == {FRAMES}, name
    # Measured: about 1 % of the logits' spread for int8 and dynamic range.
    assert np.abs(logits - expected).max() <= (
        0.1 * np.ptp(expected) + 1e-3), name


def test_an_export_directory_of_a_base_model(clip, tmp_path):
  base_model = build_movinet_classifier('t0', len(LABELS))
  out = tmp_path / 'export'
  info = exporter.export(base_model, LABELS, str(out), image_size=SIZE,
                         num_frames=FRAMES)
  assert sorted(p.name for p in out.iterdir()) == [
      'export.json', 'labels.txt', 'model.tflite', 'saved_model']
  assert json.loads((out / 'export.json').read_text()) == (
      json.loads(json.dumps(dataclasses.asdict(info))))
  assert (info.model_id, info.variant, info.image_size, info.num_frames,
          info.labels, info.format_version) == (
              't0', 'base', SIZE, FRAMES, tuple(LABELS), 1)
  # Without a run's record, the default sampling at the videos' own rate.
  assert info.sampling == ClipSampling().to_json()
  assert (out / 'labels.txt').read_text() == 'jump\nrun\nwalk\n'
  assert info.parity['saved_model'] <= SAVED_MODEL_BOUND
  assert info.parity['tflite'] <= TFLITE_BOUND
  expected = base_model(clip, training=False).numpy()
  serve = tf.saved_model.load(
      str(out / 'saved_model')).signatures['serving_default']
  outputs = serve(image=clip)
  assert np.abs(outputs['logits'].numpy() - expected).max() <= (
      SAVED_MODEL_BOUND)
  np.testing.assert_allclose(outputs['probabilities'].numpy(),
                             tf.nn.softmax(expected).numpy(), atol=1e-6)
  runner = tf.lite.Interpreter(
      model_path=str(out / 'model.tflite')).get_signature_runner()
  assert runner.get_input_details()['image']['shape'].tolist() == [
      1, FRAMES, SIZE, SIZE, 3]
  assert np.abs(runner(image=clip)['logits'] - expected).max() <= (
      TFLITE_BOUND)
  assert not _flex_ops(out / 'model.tflite')


def test_a_t0_stream_export(tmp_path):
  """t0 too (the a0 stream, t0 base and a0 base exports are tested above
  and in the round trip): the exporter measures the official loops'
  parity itself and fails past the bounds."""
  out = tmp_path / 't0_stream'
  info = exporter.export(build_movinet_classifier('t0', 2, stream=True),
                         ['a', 'b'], str(out), image_size=SIZE)
  assert (info.model_id, info.variant) == ('t0', 'stream')
  assert info.parity['saved_model'] <= SAVED_MODEL_BOUND
  assert info.parity['tflite'] <= TFLITE_BOUND
  assert not _flex_ops(out / 'model.tflite')


def test_an_incomplete_export_directory_is_named(stream_export, tmp_path):
  out = pathlib.Path(stream_export.path)
  copy = tmp_path / 'copy'
  copy.mkdir()
  (copy / 'export.json').write_text((out / 'export.json').read_text())
  (copy / 'labels.txt').write_text('a\n')
  with pytest.raises(exporter.ExportDirError, match=(
      'incomplete: saved_model, model_dynamic_range.tflite, '
      'model_float16.tflite, model.tflite, model_int8.tflite missing')):
    exporter.read_info(str(copy))
  record = json.loads((out / 'export.json').read_text())
  (copy / 'export.json').write_text(json.dumps(record | {
      'format_version': 0}))
  with pytest.raises(exporter.ExportDirError, match='export format 0, not 1'):
    exporter.read_info(str(copy))
  with pytest.raises(exporter.ExportDirError, match='no export.json'):
    exporter.read_info(str(tmp_path))


def test_calibration_clips_come_from_the_split(stream_export):
  prepared = stream_export.prepared
  clips = calibration.read_clips(prepared, 'train', 100, SAMPLING, SIZE)
  # 4 classes x 2 videos, one clip each: fewer than asked.
  assert len(clips.clips) == 8
  assert sorted(clips.labels) == [0, 0, 1, 1, 2, 2, 3, 3]
  assert {c.shape for c in clips.clips} == {(1, FRAMES, SIZE, SIZE, 3)}
  assert all(0 <= c.min() and c.max() <= 1 for c in clips.clips)
  with pytest.raises(ValueError, match='--calibration_split'):
    calibration.read_clips(prepared, 'validation', 4, SAMPLING, SIZE)


def test_int8_needs_calibration_clips(tmp_path):
  model = build_movinet_classifier('t0', 2)
  with pytest.raises(ValueError, match='--calibration_data'):
    exporter.export(model, ['a', 'b'], str(tmp_path / 'out'),
                    image_size=SIZE, num_frames=FRAMES,
                    quantizations=('int8',))
  assert not (tmp_path / 'out').exists()


def test_a_mixed_precision_model_exports_in_float32(clip):
  keras.mixed_precision.set_dtype_policy('mixed_float16')
  try:
    mixed = build_movinet_classifier('t0', 2)
  finally:
    keras.mixed_precision.set_dtype_policy('float32')
  exported = exporter.as_float32(mixed)
  assert mixed.compute_dtype == 'float16'
  assert {layer.compute_dtype
          for layer in exported._flatten_layers()} == {'float32'}
  same = build_movinet_classifier('t0', 2)
  same.set_weights(mixed.get_weights())
  np.testing.assert_array_equal(np.asarray(exported(clip)),
                                np.asarray(same(clip)))


def test_the_command_refuses_a_folder_that_holds_files(tmp_path):
  out = tmp_path / 'export'
  out.mkdir()
  (out / 'mine.txt').write_text('a file of the user\'s')
  result = subprocess.run(
      [sys.executable, '-m', 'trainer.export_main',
       f'--keras={tmp_path / "model.keras"}', f'--output_dir={out}'],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'movinet-export: error: --output_dir={out} is not an empty folder; '
      'pass a new one (an export is never written over another)')
  assert [p.name for p in out.iterdir()] == ['mine.txt']


def test_an_op_without_a_builtin_stops_the_export_naming_it():
  # A real op TFLite's builtins lack (a matrix determinant).
  spec = tf.TensorSpec([1, 3, 3], tf.float32, name='image')

  @tf.function(input_signature=[spec])
  def determinant(image):
    return {'logits': tf.linalg.det(image)}

  with pytest.raises(tflite.FlexOpsError, match='tf.MatrixDeterminant'):
    tflite._convert(determinant.get_concrete_function(), spec)
