"""The UCF101 recipes end to end, on a zip laid out as `UCF101_videos.zip`.

`movinet-prepare --source=ucf101` reads the flat zip over HTTP Range
requests (tests/ucf101_fixture.py says where its shape comes from); then
`movinet-train --gin_file=<recipe>` starts from a random-weight checkpoint in
the official archive's layout (`movinet_a0_base/ckpt-1.*` in
`movinet_a0_base.tar.gz`), served over HTTP where the recipe names the real
one. Only the clip size and the epochs are made tiny.
"""

import json
import tarfile

import keras
import numpy as np
import pytest

from tests import local_http
from tests import ucf101_fixture as ucf
from tests.model import official_oracle
from tests.training import run_helpers as runs
from trainer.data import prepare as prepare_lib
from trainer.model import build_movinet_classifier
from trainer.model import load_official_checkpoint

pytestmark = pytest.mark.slow(minutes=1)  # the module, on 2 cores

_LABELS = ['ApplyEyeMakeup', 'Archery', 'HandStandPushups']


@pytest.fixture(scope='module')
def ucf101_data(ucf101_zips, tmp_path_factory):
  """The flat fixture prepared as the transfer recipe's header says."""
  out = tmp_path_factory.mktemp('ucf101_10')
  prepare_lib.prepare(str(out), source='ucf101',
                      ucf101_url=ucf101_zips.url[ucf.FLAT], split_by='group',
                      fold=1, fps=5, workers=1)
  return str(out)


@pytest.fixture(scope='module')
def k600_archive(tmp_path_factory):
  """`movinet_a0_base.tar.gz` of a random official A0 with 600 classes,
  served over HTTP; yields (URL, local path)."""
  model = official_oracle.build_official('a0', 600)
  release = tmp_path_factory.mktemp('release') / 'movinet_a0_base'
  release.mkdir()
  official_oracle.save_like_release(model, release)
  www = tmp_path_factory.mktemp('www')
  path = www / 'movinet_a0_base.tar.gz'
  with tarfile.open(path, 'w:gz') as archive:
    archive.add(release, arcname='movinet_a0_base')
  server = local_http.LocalHttpServer(www)
  yield f'{server.url}/movinet_a0_base.tar.gz', path
  server.stop()


@pytest.mark.parametrize('gin_file', ['ucf101_a0_transfer.gin',
                                      'ucf101_a0_tutorial.gin'])
def test_recipe_trains_and_evaluates(gin_file, ucf101_data, k600_archive,
                                     env, tmp_path):
  url, archive = k600_archive
  model_dir = tmp_path / 'run'
  bindings = [f"DATA_DIR = '{ucf101_data}'", f"PRETRAINED = '{url}'",
              'build_inputs.image_size = 32', 'run.epochs = 1',
              'run.verbose = 2']
  result = runs.train(model_dir, bindings, f'--gin_file={gin_file}', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Loaded the backbone of {url}' in result.stderr

  metrics = json.loads((model_dir / 'eval' / 'metrics.json').read_text())
  assert metrics['num_clips'] == 9  # g01, g01, g02 of each class: fold 1
  assert list(metrics['per_class_accuracy']) == _LABELS
  confusion = np.array(metrics['confusion_matrix'])
  assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [3] * 3
  png = (model_dir / 'eval' / 'confusion_matrix.png').read_bytes()
  assert png.startswith(b'\x89PNG')

  # The frozen backbone is the served checkpoint's, untouched by training.
  trained = keras.saving.load_model(model_dir / 'final_model.keras')
  expected = build_movinet_classifier('a0', 3)
  load_official_checkpoint(expected, str(archive), include_head=False,
                           cache_dir=str(tmp_path / 'cache'))
  assert len(trained.backbone.weights) == len(expected.backbone.weights)
  for got, want in zip(trained.backbone.weights, expected.backbone.weights):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want),
                                  err_msg=got.path)
