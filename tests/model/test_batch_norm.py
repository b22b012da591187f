"""The fused video BatchNorm computes what keras BatchNormalization does."""

import keras
import numpy as np
import pytest

from trainer.model.batch_norm import VideoBatchNormalization


@pytest.mark.parametrize('training', [False, True])
def test_matches_keras_batch_norm(training):
  inputs = np.random.default_rng(0).normal(2.0, 3.0, (2, 3, 5, 4, 6))
  inputs = inputs.astype(np.float32)
  fused = VideoBatchNormalization(momentum=0.9, epsilon=1e-3)
  reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
  for layer in (fused, reference):
    layer.build(inputs.shape)
  rng = np.random.default_rng(1)
  for name in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
    value = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    getattr(fused, name).assign(value)
    getattr(reference, name).assign(value)
  np.testing.assert_allclose(np.asarray(fused(inputs, training=training)),
                             np.asarray(reference(inputs, training=training)),
                             atol=1e-5)
  for name in ('moving_mean', 'moving_variance'):
    np.testing.assert_allclose(np.asarray(getattr(fused, name)),
                               np.asarray(getattr(reference, name)),
                               atol=1e-5, err_msg=name)


def test_frozen_layer_uses_moving_statistics():
  inputs = np.random.default_rng(0).normal(size=(1, 2, 3, 3, 4))
  layer = VideoBatchNormalization()
  layer.build(inputs.shape)
  layer.trainable = False
  before = np.asarray(layer.moving_mean).copy()
  np.testing.assert_allclose(np.asarray(layer(inputs, training=True)),
                             inputs / np.sqrt(1 + 1e-3), atol=1e-5)
  np.testing.assert_array_equal(before, np.asarray(layer.moving_mean))
