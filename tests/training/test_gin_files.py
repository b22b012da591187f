"""Every gin file parses against the real configurables and has a header."""

import glob
import os

import gin
import pytest

from trainer import main
import trainer.training  # noqa: F401  (registers the configurables)

GIN_FILES = sorted(glob.glob(os.path.join(main.GIN_DIR, '**', '*.gin'),
                             recursive=True))


def test_the_expected_files_exist():
  names = {os.path.relpath(f, main.GIN_DIR) for f in GIN_FILES}
  assert {'quickstart.gin', 'ucf101_a0_transfer.gin', 'ucf101_a0_stream.gin',
          'platforms/multi_gpu.gin', 'platforms/tpu.gin'} <= names
  assert main.DEFAULT_GIN_FILE in names


@pytest.fixture
def clean_gin():
  gin.clear_config()
  gin.add_config_file_search_path(main.GIN_DIR)
  yield
  gin.clear_config()


@pytest.mark.parametrize('path', GIN_FILES,
                         ids=lambda p: os.path.relpath(p, main.GIN_DIR))
def test_parses_and_has_a_header(path, clean_gin):
  del clean_gin
  with open(path) as f:
    text = f.read()
  if 'DATA_DIR = %gin.REQUIRED' in text:
    with pytest.raises(ValueError, match='DATA_DIR'):
      gin.parse_config_files_and_bindings([path], [], skip_unknown=False)
    gin.clear_config()
  # Unknown configurables or parameters raise here (skip_unknown=False).
  gin.parse_config_files_and_bindings([path], ["DATA_DIR = '/data/x'"],
                                      skip_unknown=False)
  assert text.startswith('#')
  header = text.split('\n\n')[0]
  assert 'Command' in header and 'movinet-train' in header
  assert 'Required macros' in header


@pytest.mark.parametrize('platform', ['platforms/multi_gpu.gin',
                                      'platforms/tpu.gin'])
def test_platforms_layer_on_an_experiment(platform, clean_gin):
  del clean_gin
  gin.parse_config_files_and_bindings(
      ['ucf101_a0_transfer.gin', platform], ["DATA_DIR = '/data/ucf101'"],
      skip_unknown=False)
  assert gin.query_parameter('build_model.use_sync_bn') is True
  assert gin.query_parameter('build_inputs.per_replica_batch_size') == 8
  assert gin.query_parameter('build_model.freeze_backbone') is True


def test_stream_file_overrides_the_transfer_recipe(clean_gin):
  del clean_gin
  gin.parse_config_files_and_bindings(['ucf101_a0_stream.gin'],
                                      ["DATA_DIR = '/data/x'"],
                                      skip_unknown=False)
  assert gin.query_parameter('build_model.stream') is True
  assert gin.query_parameter('%PRETRAINED').endswith('movinet_a0_stream.tar.gz')
  assert gin.query_parameter('build_inputs.frame_step') == 15
