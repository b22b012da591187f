"""Export: SavedModel and TFLite with the official signatures, measured
against the Keras model on a random clip (random weights, 32 x 32 frames).

The loops are the official ones: the stream SavedModel as the official
notebooks call it (`signatures['init_states']`, then `signatures['call']`
per frame), the stream TFLite as the official README runs it (zero states
from the signature's input details, `outputs = runner(**states,
image=frame)`, `logits = outputs.pop('logits')`, `states = outputs`).
"""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainer.export import exporter
from trainer.export import saved_model
from trainer.export import tflite
from trainer.model import build_movinet_classifier

pytestmark = pytest.mark.slow(minutes=0.8)  # the module, on 2 cores

FRAMES, SIZE, CLASSES = 6, 32, 3
# The exporter's bounds (issue: SavedModel vs Keras, TFLite float32 frame by
# frame vs Keras on the whole clip).
SAVED_MODEL_BOUND, TFLITE_BOUND = 1e-5, 1e-4


@pytest.fixture(scope='module')
def clip():
  return np.random.default_rng(0).uniform(
      size=(1, FRAMES, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def stream_model():
  return build_movinet_classifier('a0', CLASSES, stream=True)


@pytest.fixture(scope='module')
def base_model():
  return build_movinet_classifier('t0', CLASSES)


def _ops(model_content: bytes) -> set[str]:
  interpreter = tf.lite.Interpreter(model_content=model_content)
  return {op['op_name'] for op in interpreter._get_ops_details()}


def test_stream_saved_model_runs_the_official_notebook_loop(
    stream_model, clip, tmp_path):
  saved_model.export(stream_model, str(tmp_path / 'saved_model'))
  model = tf.saved_model.load(str(tmp_path / 'saved_model'))
  assert set(model.signatures) == {'init_states', 'call'}
  states = model.signatures['init_states'](tf.shape(clip))
  assert set(states) == set(stream_model.init_states(clip.shape))
  for frame in range(FRAMES):
    outputs = model.signatures['call'](**states,
                                       image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  expected = stream_model(clip, training=False).numpy()
  assert np.abs(logits.numpy() - expected).max() <= SAVED_MODEL_BOUND


def test_stream_tflite_runs_the_official_readme_loop(stream_model, clip):
  model_content = tflite.convert(stream_model, SIZE)
  runner = tf.lite.Interpreter(
      model_content=model_content).get_signature_runner()
  inputs = runner.get_input_details()
  assert set(inputs) == {'image', *stream_model.init_states(clip.shape)}
  states = {name: np.zeros(detail['shape'], dtype=detail['dtype'])
            for name, detail in inputs.items() if name != 'image'}
  for frame in range(FRAMES):
    outputs = runner(**states, image=clip[:, frame:frame + 1])
    logits = outputs.pop('logits')
    states = outputs
  expected = stream_model(clip, training=False).numpy()
  assert np.abs(logits - expected).max() <= TFLITE_BOUND
  # Frame counters count: 6 frames seen by every pool.
  assert {int(v[0]) for k, v in states.items() if 'frame_count' in k} == {
      FRAMES}
  # Builtin ops only: a Flex op shows as `FlexXxx` or `CUSTOM`.
  assert not {op for op in _ops(model_content)
              if op.startswith('Flex') or op == 'CUSTOM'}


def test_an_export_directory_of_a_base_model(base_model, clip, tmp_path):
  out = tmp_path / 'export'
  info = exporter.export(base_model, ['jump', 'run', 'walk'], str(out),
                         image_size=SIZE, num_frames=FRAMES)
  assert sorted(p.name for p in out.iterdir()) == [
      'export.json', 'labels.txt', 'model.tflite', 'saved_model']
  assert json.loads((out / 'export.json').read_text()) == (
      json.loads(json.dumps(dataclasses.asdict(info))))
  assert (info.model_id, info.variant, info.image_size, info.num_frames,
          info.labels) == ('t0', 'base', SIZE, FRAMES,
                           ('jump', 'run', 'walk'))
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
  model_content = (out / 'model.tflite').read_bytes()
  runner = tf.lite.Interpreter(
      model_content=model_content).get_signature_runner()
  assert runner.get_input_details()['image']['shape'].tolist() == [
      1, FRAMES, SIZE, SIZE, 3]
  assert np.abs(runner(image=clip)['logits'] - expected).max() <= (
      TFLITE_BOUND)
  assert not {op for op in _ops(model_content)
              if op.startswith('Flex') or op == 'CUSTOM'}


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
