"""Official checkpoints load into the Keras 3 model and give the same outputs."""

import numpy as np
import pytest

from tests.model import official_oracle
from trainer.model import MODEL_IDS, build_movinet_classifier
from trainer.model.checkpoint_convert import load_official_checkpoint

VIDEO_SHAPE = (2, 4, 40, 40, 3)  # odd sizes after the strides test padding
TOLERANCE = 1e-4


def _video(shape=VIDEO_SHAPE, seed=1):
  return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize('stream', [False, True], ids=['base', 'stream'])
@pytest.mark.parametrize('model_id', MODEL_IDS)
def test_parity_with_official(model_id, stream, tmp_path):
  official = official_oracle.build_official(model_id, 7, stream=stream)
  official_oracle.save_like_release(official, tmp_path)
  model = build_movinet_classifier(model_id, 7, stream=stream)
  load_official_checkpoint(model, str(tmp_path))
  video = _video()
  expected = official(video, training=False).numpy()
  actual = np.asarray(model(video, training=False))
  assert np.abs(expected).max() > 1e-2  # a comparison of real signal
  np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)
