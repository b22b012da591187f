"""Fixtures of the inference tests; the shared stream export is
`tests/conftest.py`'s `stream_export` (`tests/shared_export.py`)."""

import pytest

from tests.shared_export import LABELS
from trainer.model import build_movinet_classifier


@pytest.fixture(scope='session')
def base_model():
  """A base (not stream) t0 Keras model, random weights."""
  return build_movinet_classifier('t0', len(LABELS))
