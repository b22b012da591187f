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


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory, data_dir):
  """An uninterrupted deterministic train_and_eval run of `data_dir` (2
  epochs of 8 steps); no test may change it. The modules using it share an
  `XDIST_GROUP`, so that it runs once."""
  model_dir = tmp_path_factory.mktemp('reference')
  env = runs.environment(tmp_path_factory.mktemp('reference_cache'))
  result = runs.train(model_dir, runs.tiny_bindings(data_dir), env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir
