"""Evaluation turns model outputs into the right metrics and files."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.training import evaluation

FRAMES, SIZE, NUM_CLASSES = 2, 3, 4
NAMES = ['a', 'b', 'c']


def _softmax(logits):
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def _tiny_model():
  """Flatten + Dense: (frames, size, size, 3) -> NUM_CLASSES logits."""
  model = keras.Sequential([
      keras.Input((FRAMES, SIZE, SIZE, 3)),
      keras.layers.Flatten(),
      keras.layers.Dense(NUM_CLASSES),
  ])
  rng = np.random.RandomState(1)
  model.set_weights([rng.normal(size=weight.shape)
                     for weight in model.get_weights()])
  return model


def _clip_dataset(num_videos, eval_clips, batch_size=2):
  """Random videos with labels 0, 1, 2, ... (mod NUM_CLASSES), as numpy too."""
  shape = [num_videos, FRAMES, SIZE, SIZE, 3]
  if eval_clips > 1:
    shape.insert(1, eval_clips)
  videos = np.random.RandomState(0).uniform(size=shape).astype(np.float32)
  labels = (np.arange(num_videos) % NUM_CLASSES).astype(np.int32)
  dataset = tf.data.Dataset.from_tensor_slices((videos, labels))
  return dataset.batch(batch_size), videos, labels


def _expected_probabilities(model, videos, eval_clips):
  """Softmax of numpy logits, averaged over clips by hand."""
  kernel, bias = model.get_weights()
  if eval_clips == 1:
    videos = videos[:, None]
  flat = videos.reshape(videos.shape[0], eval_clips, -1)
  return _softmax(flat @ kernel + bias).mean(axis=1)


# Rows: clips; labels 0, 0, 1, 1, 2 over 4 classes (class 3 has no clips).
PROBABILITIES = np.array([
    [0.7, 0.1, 0.1, 0.1],  # true 0, top1 0
    [0.1, 0.5, 0.3, 0.1],  # true 0, top1 1, rank of 0: 3rd -> in top3 only
    [0.4, 0.4, 0.1, 0.1],  # true 1, tie 0/1 -> lower index 0 wins top1
    [0.1, 0.2, 0.3, 0.4],  # true 1, top1 3, 1 is 3rd
    [0.0, 0.0, 0.0, 1.0],  # true 2, top1 3, 2 ties with 0, 1 -> 4th
], dtype=np.float32)
LABELS = np.array([0, 0, 1, 1, 2])
FOUR_NAMES = ['w', 'x', 'y', 'z']


def test_compute_metrics_by_hand():
  metrics = evaluation.compute_metrics(PROBABILITIES, LABELS, FOUR_NAMES)
  assert metrics.top1 == pytest.approx(1 / 5)
  # k = min(5, 4) = 4: every label is in the top 4.
  assert metrics.top5 == pytest.approx(1.0)
  assert metrics.num_clips == 5
  assert metrics.per_class_accuracy == {'w': 0.5, 'x': 0.0, 'y': 0.0,
                                           'z': None}
  assert metrics.mean_class_accuracy == pytest.approx((0.5 + 0 + 0) / 3)
  assert metrics.confusion_matrix == [
      [1, 1, 0, 0],
      [1, 0, 0, 1],
      [0, 0, 0, 1],
      [0, 0, 0, 0],
  ]
  json.loads(metrics.to_json())  # JSON-ready: plain Python types.
  assert isinstance(metrics.confusion_matrix[0][0], int)


def test_top5_with_more_than_five_classes_and_tie_rule():
  names = [f'c{i}' for i in range(7)]
  # Ranking by the tie rule: 6, 0, 1, 2, 3, 4, 5. Label 5 ties with 0..4 at
  # 0.1 but ranks 7th -> miss; label 1 ranks 3rd -> hit.
  probabilities = np.array([[0.1] * 6 + [0.4], [0.1] * 6 + [0.4]])
  metrics = evaluation.compute_metrics(probabilities, [5, 1], names)
  assert metrics.top1 == 0.0
  assert metrics.top5 == pytest.approx(0.5)
  assert metrics.confusion_matrix[5][6] == 1
  assert metrics.confusion_matrix[1][6] == 1


@pytest.mark.parametrize('probabilities, labels, names, match', [
    (np.zeros((2, 3)), [0, 3], NAMES, r'\[0, 3\)'),
    (np.zeros((2, 3)), [-1, 0], NAMES, r'\[-1\]'),
    (np.zeros((2, 4)), [0, 1], NAMES, r'must be \(num_clips, 3\)'),
    (np.zeros((3,)), [0], NAMES, 'probabilities must be'),
    (np.zeros((2, 3)), [0, 1, 2], NAMES, r'labels must be \(num_clips,\)'),
    (np.zeros((0, 3)), [], NAMES, 'zero clips'),
    (np.zeros((1, 3)), [0.0], NAMES, 'integers'),
    (np.zeros((1, 3)), [0], ['a', 'a', 'b'], 'unique'),
])
def test_compute_metrics_rejects_bad_input(probabilities, labels, names,
                                           match):
  with pytest.raises(ValueError, match=match):
    evaluation.compute_metrics(probabilities, np.asarray(labels), names)


@pytest.mark.parametrize('eval_clips', [1, 3])
def test_predict_clips_matches_numpy(eval_clips):
  model = _tiny_model()
  dataset, videos, labels = _clip_dataset(5, eval_clips)
  probabilities, got_labels = evaluation.predict_clips(
      model, dataset, eval_clips=eval_clips)
  assert probabilities.dtype == np.float32
  assert got_labels.dtype == np.int32
  np.testing.assert_array_equal(got_labels, labels)
  np.testing.assert_allclose(
      probabilities, _expected_probabilities(model, videos, eval_clips),
      rtol=1e-5, atol=1e-6)
  if eval_clips > 1:  # Averaging is not the softmax of one clip.
    single = _expected_probabilities(model, videos[:, :1], 1)
    assert not np.allclose(probabilities, single, atol=1e-3)


def test_predict_clips_under_mirrored_strategy_equals_plain():
  dataset, _, labels = _clip_dataset(5, 2)
  plain = _tiny_model()
  expected, _ = evaluation.predict_clips(plain, dataset, eval_clips=2)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  with strategy.scope():
    mirrored = _tiny_model()
    mirrored.set_weights(plain.get_weights())
    probabilities, got_labels = evaluation.predict_clips(
        mirrored, dataset, eval_clips=2)
  np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize('eval_clips, dataset_clips, match', [
    (2, 1, 'must be \\(batch, clips'),
    (1, 2, 'must be \\(batch, frames'),
    (2, 3, 'dataset yields 3 clips'),
    (0, 1, 'eval_clips must be an int >= 1'),
])
def test_predict_clips_rejects_mismatched_clips(eval_clips, dataset_clips,
                                                match):
  dataset, _, _ = _clip_dataset(2, dataset_clips)
  with pytest.raises(ValueError, match=match):
    evaluation.predict_clips(_tiny_model(), dataset, eval_clips=eval_clips)


@pytest.mark.parametrize('num_classes', [3, 101])
def test_confusion_matrix_png_decodes(num_classes):
  # As a trained classifier's: most clips on the diagonal, a few mistakes
  # (zero cells are left blank; a full matrix of counts is not what a run
  # gives, and drawing 10,000 numbers takes seconds).
  rng = np.random.RandomState(0)
  confusion = np.diag(rng.randint(3, 8, size=num_classes))
  mistakes = rng.randint(0, num_classes, size=(2 * num_classes, 2))
  np.add.at(confusion, (mistakes[:, 0], mistakes[:, 1]), 1)
  names = [f'class_{i}' for i in range(num_classes)]
  png = evaluation.confusion_matrix_png(confusion, names)
  assert png.startswith(b'\x89PNG\r\n\x1a\n')
  image = tf.io.decode_png(png).numpy()
  assert image.shape[2] in (3, 4)
  min_side = 300 if num_classes < 10 else 2000  # grows with classes.
  assert min(image.shape[:2]) >= min_side
  assert max(image.shape[:2]) <= 5000
  assert image.std() > 0  # Not blank.


def test_confusion_matrix_png_rejects_wrong_shape():
  with pytest.raises(ValueError, match=r'\(3, 3\)'):
    evaluation.confusion_matrix_png(np.zeros((2, 3)), NAMES)


def _metrics():
  return evaluation.compute_metrics(PROBABILITIES, LABELS, FOUR_NAMES)


def test_write_eval_outputs_writes_json_and_png(tmp_path):
  eval_dir = str(tmp_path / 'eval' / 'step_10')
  evaluation.write_eval_outputs(_metrics(), eval_dir)
  assert sorted(os.listdir(eval_dir)) == ['confusion_matrix.png',
                                          'metrics.json']
  with open(os.path.join(eval_dir, 'metrics.json'), encoding='utf-8') as f:
    assert json.load(f) == dataclasses.asdict(_metrics())
  with open(os.path.join(eval_dir, 'confusion_matrix.png'), 'rb') as f:
    assert tf.io.decode_png(f.read()).shape[2] in (3, 4)


def test_write_eval_outputs_overwrites_atomically(tmp_path, monkeypatch):
  eval_dir = str(tmp_path)
  evaluation.write_eval_outputs(_metrics(), eval_dir)
  renames = []
  real_replace = os.replace

  def recording_replace(src, dst):
    renames.append((src, dst))
    real_replace(src, dst)

  monkeypatch.setattr(os, 'replace', recording_replace)
  updated = dataclasses.replace(_metrics(), top1=0.75)
  evaluation.write_eval_outputs(updated, eval_dir)
  metrics_path = os.path.join(eval_dir, 'metrics.json')
  src, dst = renames[0]
  assert dst == metrics_path
  assert os.path.dirname(src) == eval_dir and '.tmp-' in src
  with open(metrics_path, encoding='utf-8') as f:
    assert json.load(f)['top1'] == 0.75
  assert sorted(os.listdir(eval_dir)) == ['confusion_matrix.png',
                                          'metrics.json']


def test_write_eval_outputs_cleans_up_after_failure(tmp_path, monkeypatch):
  def failing_replace(src, dst):
    raise OSError('disk gone')

  monkeypatch.setattr(os, 'replace', failing_replace)
  with pytest.raises(OSError, match='disk gone'):
    evaluation.write_eval_outputs(_metrics(), str(tmp_path))
  assert os.listdir(tmp_path) == []
