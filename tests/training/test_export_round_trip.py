"""The whole way out of the trainer: `movinet-train` (the reference run) ->
`movinet-export` with int8 calibrated on the run's own prepared test split
-> `movinet-classify` on new synthetic videos (other seeds than the
training data, written as the synthetic source writes them: MJPEG AVIs).
The commands run in their own processes, as a user runs them.

The reference run trains 16 steps, so its model is not accurate (top-1
about 0.3); what the round trip checks is that the exported model, sampled
as the run recorded, classifies each video as the run's own Keras model
does. Accuracy after export is measured on the quickstart (README)."""

import json
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from trainer import export_main
from trainer.data import synthetic
from trainer.export import exporter
from trainer.inference import ClipClassifier

pytestmark = pytest.mark.slow(minutes=0.5)

XDIST_GROUP = 'reference_run'  # with test_main.py and test_bad_input.py


def _command(module, *args, env):
  result = subprocess.run([sys.executable, '-m', module, *args], env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def _frames(path):
  capture = cv2.VideoCapture(path)
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      return np.stack(frames), capture.get(cv2.CAP_PROP_FPS)
    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_train_export_classify(reference_run, data_dir, env, tmp_path):
  out = tmp_path / 'export'
  _command('trainer.export_main', f'--model_dir={reference_run}',
           '--quantize=int8', f'--calibration_data={data_dir}',
           '--calibration_split=test', f'--output_dir={out}', env=env)
  info = exporter.read_info(str(out))
  # What the run trained on (run_helpers.tiny_bindings), kept for inference.
  recorded = json.loads((reference_run / 'sampling.json').read_text())
  assert info.sampling == recorded
  assert (recorded['num_frames'], recorded['frame_step'],
          recorded['image_size'], info.image_size, info.num_frames) == (
              4, 2, 32, 32, 4)
  assert sorted(info.labels) == sorted(synthetic.CLASS_NAMES[:4])
  assert info.parity['tflite_int8_top1_agreement'] >= 0.9
  videos = synthetic.generate_videos(
      str(tmp_path / 'videos'), num_classes=4, videos_per_class=2,
      num_frames=16, size=(48, 64), seed=1234)
  results = tmp_path / 'results.json'
  _command('trainer.classify_main', f'--model={out}',
           f'--output_json={results}', '--top_k=4', *videos, env=env)
  record = json.loads(results.read_text())
  assert (record['sampling'], record['failed']) == (recorded, [])
  keras_model = ClipClassifier(str(reference_run))
  for path, result in zip(videos, record['videos'], strict=True):
    expected = keras_model(*_frames(path))
    exported = {entry['label']: entry['probability']
                for entry in result['top_k']}
    assert result['top_k'][0]['label'] == (
        keras_model.labels[int(np.argmax(expected))])
    np.testing.assert_allclose(
        [exported[label] for label in keras_model.labels], expected,
        atol=1e-5)


def test_the_newest_checkpoint_is_a_source(reference_run):
  # `--weights=latest_checkpoint`: the architecture of the run's saved model,
  # the weights of its newest checkpoint, which at the run's end are the
  # final model's.
  model = export_main._from_model_dir(str(reference_run),
                                      'latest_checkpoint')
  final = keras.saving.load_model(reference_run / 'final_model.keras')
  assert len(model.weights) == len(final.weights)
  for restored, saved in zip(model.weights, final.weights):
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
