"""The classifiers against the Keras model they were exported from."""

import io
import json
import os
import shutil

import keras
import numpy as np
import pytest

from tests.shared_export import EXPORT_GROUP
from tests.shared_export import LABELS
from tests.shared_export import SAMPLING
from tests.shared_export import SIZE
from trainer import classify_main
from trainer.export import exporter
from trainer.inference import ClipClassifier
from trainer.inference import StreamClassifier
from trainer.inference import load_model

XDIST_GROUP = EXPORT_GROUP
pytestmark = pytest.mark.slow(minutes=0.4)  # the folder, with its export
BOUND = 1e-4  # the TFLite export's own parity bound


@pytest.fixture(scope='module')
def frames():
  """Four float frames in [0, 1], already the model's size."""
  return np.random.default_rng(1).uniform(
      size=(4, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def keras_probabilities(stream_export, frames):
  """The Keras stream model's probabilities after each frame, from zero
  states, one frame per call."""
  model = stream_export.model
  states = model.init_states((1, 1, SIZE, SIZE, 3))
  found = []
  for frame in frames:
    logits, states = model({**states, 'image': frame[None, None]},
                           training=False)
    found.append(keras.ops.softmax(logits)[0])
  return np.array(found)


@pytest.fixture(scope='module')
def saved_model(stream_export):
  """The export's SavedModel, loaded once (a second or two)."""
  return load_model(stream_export.path, backend='saved_model')


@pytest.mark.parametrize('backend', ['tflite', 'saved_model'])
def test_a_stream_classifier_is_the_keras_model_frame_by_frame(
    stream_export, saved_model, frames, keras_probabilities, backend):
  expected = keras_probabilities
  classifier = StreamClassifier(
      saved_model if backend == 'saved_model' else stream_export.path)
  assert classifier.labels == LABELS
  got = np.array([classifier(frame) for frame in frames])
  assert got.shape == (len(frames), len(LABELS))
  assert np.abs(got - expected).max() <= BOUND
  classifier.reset()
  assert np.abs(classifier(frames[0]) - expected[0]).max() <= BOUND


def test_reset_restores_the_zero_states(stream_export, frames):
  classifier = StreamClassifier(stream_export.path)
  for frame in frames:
    classifier(frame)
  assert any(np.any(value) for value in classifier._states.values())
  classifier.reset()
  assert not any(np.any(value) for value in classifier._states.values())


def test_a_stream_model_in_clips_is_its_stream_over_the_clip_s_frames(
    stream_export, saved_model):
  video = np.random.default_rng(2).integers(0, 256, (20, 24, 40, 3),
                                            np.uint8)
  tflite = ClipClassifier(stream_export.path, clips=2)
  indices = tflite.frame_indices(len(video), 30.0)
  assert indices.shape == (2, SAMPLING.num_frames)
  stream = StreamClassifier(stream_export.path)
  expected = []
  for clip in indices:
    stream.reset()
    expected.append([stream(video[index]) for index in clip][-1])
  expected = np.mean(expected, axis=0)
  assert np.abs(tflite(video, 30.0) - expected).max() <= BOUND
  # The SavedModel takes each clip as one chunk.
  whole = ClipClassifier(saved_model, clips=2)
  assert np.abs(whole(video, 30.0) - expected).max() <= BOUND


def test_a_base_model_averages_its_clips(base_model):
  model = base_model
  classifier = ClipClassifier(model, clips=2, sampling=SAMPLING)
  video = np.random.default_rng(3).uniform(
      size=(16, SIZE, SIZE, 3)).astype(np.float32)
  indices = classifier.frame_indices(len(video), 30.0)
  expected = np.mean([keras.ops.softmax(model(video[clip][None]))[0]
                      for clip in indices], axis=0)
  assert np.abs(classifier(video, 30.0) - expected).max() <= 1e-5
  with pytest.raises(ValueError, match='is a base model'):
    StreamClassifier(model)


def test_a_quantization_the_export_lacks_is_named(stream_export, tmp_path):
  copy = tmp_path / 'float_only'
  shutil.copytree(stream_export.path, copy)
  record = json.loads((copy / exporter.INFO_NAME).read_text())
  record['tflite'] = {'float32': exporter.TFLITE_NAME}
  (copy / exporter.INFO_NAME).write_text(json.dumps(record))
  with pytest.raises(ValueError, match='has float32; choose'):
    load_model(str(copy), quantization='int8')


def test_an_incomplete_export_is_one_line(stream_export, tmp_path):
  broken = tmp_path / 'broken'
  shutil.copytree(stream_export.path, broken)
  os.remove(broken / exporter.TFLITE_NAME)
  err = io.StringIO()
  status = classify_main.classify(
      ['video.mp4'], classify_main.Settings(model=str(broken)), err=err)
  assert status == 1
  assert err.getvalue() == (
      f'movinet-classify: error: {broken} is incomplete: model.tflite '
      'missing; re-export the model\n')


@pytest.mark.parametrize('settings, message', [
    (dict(), 'give one model'),
    (dict(model='e', keras='k.keras'), 'give one model'),
    (dict(keras='k.keras', backend='saved_model'), '--backend is for'),
    (dict(model='e', camera=0), '--camera in clip mode'),
    (dict(model='e', plot='p.png'), 'needs --stream'),
    (dict(model='e', stream=True, clips=3), '--clips=3 is for clip mode'),
    (dict(model='e', output_video='v.avi'), 'end it in .mp4 or .gif'),
])
def test_flags_that_do_not_fit_are_one_line(settings, message):
  err = io.StringIO()
  assert classify_main.classify(['video.mp4'],
                                classify_main.Settings(**settings),
                                err=err) == 1
  lines = err.getvalue().splitlines()
  assert len(lines) == 1 and message in lines[0], lines
