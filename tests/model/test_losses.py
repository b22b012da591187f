"""The training loss, and what loading a saved model needs."""

import keras
import numpy as np

from trainer.model import SparseCrossentropy


def test_the_loss_is_smoothed_cross_entropy_of_the_logits():
  logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], np.float32)
  labels = np.array([0, 1])
  smoothing = 0.1
  targets = np.eye(3)[labels] * (1 - smoothing) + smoothing / 3
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -(targets * log_softmax).sum(axis=1).mean()
  loss = SparseCrossentropy(3, label_smoothing=smoothing)
  np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-6)


def test_a_saved_model_names_a_loss_of_trainer_model():
  # `final_model.keras` stores the loss under this name; the class must be
  # importable without the trainer, and keep the name of earlier releases.
  registered = keras.saving.get_registered_object(
      'movinet_trainer>SparseCrossentropy')
  assert registered is SparseCrossentropy
  config = keras.saving.serialize_keras_object(SparseCrossentropy(4, 0.2))
  again = keras.saving.deserialize_keras_object(config)
  assert (again.num_classes, again.label_smoothing) == (4, 0.2)
