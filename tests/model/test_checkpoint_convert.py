"""Official checkpoints load into the Keras 3 model; outputs are the same."""

import io
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from tests import local_http
from tests.model import official_oracle
from trainer import export_main
from trainer.model import MODEL_IDS, build_movinet_classifier
from trainer.model.checkpoint_convert import load_official_checkpoint

pytestmark = pytest.mark.slow(minutes=3.5)  # the module, on 2 cores

VIDEO_SHAPE = (2, 4, 40, 40, 3)  # odd sizes after the strides test padding
TOLERANCE = 1e-4


def _video(shape=VIDEO_SHAPE, seed=1):
  return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.spread  # 10-45 s a case, most of it building the oracle
@pytest.mark.parametrize('stream', [False, True], ids=['base', 'stream'])
@pytest.mark.parametrize('model_id', MODEL_IDS)
def test_parity_with_official(model_id, stream, tmp_path):
  """Equal logits; a stream model is fed two chunks with its states carried
  (the official notebooks' way), and its states equal the official ones by
  name, shape and value after each chunk."""
  official = official_oracle.build_official(model_id, 7, stream=stream,
                                            external_states=stream)
  official_oracle.save_like_release(official, tmp_path)
  model = build_movinet_classifier(model_id, 7, stream=stream)
  load_official_checkpoint(model, str(tmp_path))
  video = _video()
  if not stream:
    expected = official(video, training=False).numpy()
    assert np.abs(expected).max() > 1e-2  # a comparison of real signal
    np.testing.assert_allclose(np.asarray(model(video, training=False)),
                               expected, atol=TOLERANCE, rtol=0)
    return
  official_states = official.init_states(tf.constant(VIDEO_SHAPE))
  states = model.init_states(VIDEO_SHAPE)
  assert {name: tuple(value.shape) for name, value in states.items()} == {
      name: tuple(value.shape) for name, value in official_states.items()}
  for start in (0, 2):
    chunk = video[:, start:start + 2]
    expected, official_states = official({**official_states, 'image': chunk})
    logits, states = model({**states, 'image': chunk})
    assert np.abs(expected.numpy()).max() > 1e-2
    np.testing.assert_allclose(np.asarray(logits), expected.numpy(),
                               atol=TOLERANCE, rtol=0)
    assert set(states) == set(official_states)
    for name, value in official_states.items():
      np.testing.assert_allclose(np.asarray(states[name]), value.numpy(),
                                 atol=TOLERANCE, rtol=0, err_msg=name)


@pytest.fixture(scope='module')
def official_a0(tmp_path_factory):
  """The official a0 base (7 classes) saved as released and as trained."""
  model = official_oracle.build_official('a0', 7)
  release = tmp_path_factory.mktemp('release')
  trainer = tmp_path_factory.mktemp('trainer')
  official_oracle.save_like_release(model, release)
  official_oracle.save_like_trainer(model, trainer)
  expected = model(_video(), training=False).numpy()
  return dict(model=model, release=release, trainer=trainer,
              expected=expected)


def _weights(model):
  return [np.array(v) for v in model.weights]


def test_trainer_checkpoint_with_backbone_keys(official_a0):
  keys = [name for name, _ in tf.train.list_variables(
      str(official_a0['trainer']))]
  assert any(key.startswith('backbone/') for key in keys)
  model = build_movinet_classifier('a0', 7)
  load_official_checkpoint(model, str(official_a0['trainer']))
  np.testing.assert_allclose(np.asarray(model(_video(), training=False)),
                             official_a0['expected'], atol=TOLERANCE, rtol=0)


def test_movinet_export_reads_an_official_checkpoint(official_a0):
  """movinet-export's official source: the official model's logits, and the
  sampling of the official a0 config (configs/yaml/movinet_a0_k600_8x8.yaml:
  50 frames, stride 5, 172 px) for export.json."""
  model, sampling = export_main.official_model(
      'a0', str(official_a0['release']), 7, stream=False)
  np.testing.assert_allclose(np.asarray(model(_video(), training=False)),
                             official_a0['expected'], atol=TOLERANCE, rtol=0)
  assert sampling.to_json() == {'num_frames': 50, 'frame_step': 5,
                                'fps': 25.0, 'image_size': 172,
                                'resize': 'crop'}
  with pytest.raises(ValueError, match='--model_id needs --checkpoint'):
    export_main.official_model('a0', None, 7, stream=False)


def test_archive_served_over_http(official_a0, tmp_path):
  www = tmp_path / 'www'
  www.mkdir()
  with tarfile.open(www / 'movinet_a0_base.tar.gz', 'w:gz') as archive:
    archive.add(official_a0['release'], arcname='movinet_a0_base')
  server = local_http.LocalHttpServer(www)
  try:
    model = build_movinet_classifier('a0', 7)
    load_official_checkpoint(model, f'{server.url}/movinet_a0_base.tar.gz',
                             cache_dir=str(tmp_path / 'cache'))
  finally:
    server.stop()
  np.testing.assert_allclose(np.asarray(model(_video(), training=False)),
                             official_a0['expected'], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize('source', ['release', 'trainer'])
def test_backbone_only_for_new_classes(official_a0, source):
  model = build_movinet_classifier('a0', 3)
  head_before = [np.array(v) for v in model.head.weights +
                 model.classifier.weights]
  load_official_checkpoint(model, str(official_a0[source]),
                           include_head=False)
  official_backbone = official_a0['model'].backbone
  features = official_backbone(_video(), training=False)[0]['head'].numpy()
  ours, _ = model.backbone(_video(), training=False)
  np.testing.assert_allclose(np.asarray(ours), features, atol=TOLERANCE,
                             rtol=0)
  head_after = [np.array(v) for v in model.head.weights +
                model.classifier.weights]
  for before, after in zip(head_before, head_after):
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize('kwargs, message', [
    (dict(model_id='a1', num_classes=7), 'missing.*model_id'),
    (dict(model_id='a0', num_classes=7, stream=True), 'missing.*unused'),
    (dict(model_id='a0', num_classes=7, conv_type='3d_2plus1d'),
     'missing.*shape mismatch'),
    (dict(model_id='a0', num_classes=5),
     'shape mismatch.*classifier.*include_head=False'),
])
def test_mismatched_checkpoint_is_refused_and_nothing_loaded(
    official_a0, kwargs, message):
  model = build_movinet_classifier(**kwargs)
  before = _weights(model)
  with pytest.raises(ValueError, match=message) as error:
    load_official_checkpoint(model, str(official_a0['release']))
  assert 'layer_with_weights' in str(error.value)  # names the variables
  for old, new in zip(before, _weights(model)):
    np.testing.assert_array_equal(old, new)


def test_corrupt_checkpoint_is_refused(official_a0, tmp_path):
  broken = tmp_path / 'broken'
  shutil.copytree(official_a0['release'], broken)
  data = next(broken.glob('*.data-*'))
  data.write_bytes(data.read_bytes()[:1000])
  model = build_movinet_classifier('a0', 7)
  before = _weights(model)
  with pytest.raises(ValueError, match='corrupt|Cannot read'):
    load_official_checkpoint(model, str(broken))
  for old, new in zip(before, _weights(model)):
    np.testing.assert_array_equal(old, new)


def test_malicious_archive_is_refused(tmp_path):
  path = tmp_path / 'evil.tar.gz'
  with tarfile.open(path, 'w:gz') as archive:
    member = tarfile.TarInfo('../escape.index')
    member.size = 3
    archive.addfile(member, io.BytesIO(b'bad'))
  model = build_movinet_classifier('t0', 3)
  with pytest.raises(ValueError, match=r'\.\.'):
    load_official_checkpoint(model, str(path), cache_dir=str(tmp_path / 'c'))
  assert not (tmp_path / 'escape.index').exists()
