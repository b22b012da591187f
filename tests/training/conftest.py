"""Fixtures of the movinet-train subprocess tests."""

import pytest

from tests.training import run_helpers as runs


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """The environment of a run: its own cache, TensorFlow's C++ log quiet."""
  return runs.environment(tmp_path_factory.mktemp('cache'))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """Prepared once per test process; no test may change it."""
  return runs.prepare_tiny(tmp_path_factory.mktemp('data'))
