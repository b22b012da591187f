"""Every gin file parses against the real configurables, has a header and
makes a valid typed experiment config.

Parsing runs in a fresh process, as `movinet-train` does: in the test
process tf-models-official (the model tests' oracle) registers configurables
of its own, e.g. another `build_optimizer`, which would make names ambiguous.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'gin')
GIN_FILES = sorted(os.path.relpath(f, GIN_DIR) for f in glob.glob(
    os.path.join(GIN_DIR, '**', '*.gin'), recursive=True))
DATA_DIR = "DATA_DIR = '/data/x'"
_RECIPE = ['build_inputs.batch_size', 'build_inputs.num_frames',
           'build_inputs.frame_step', 'build_inputs.image_size',
           'build_inputs.train_resize', 'build_inputs.flip',
           'build_model.model_id', '%PRETRAINED', 'build_model.freeze_backbone',
           'build_model.dropout_rate', 'build_optimizer.name',
           'build_optimizer.learning_rate', 'run.epochs']

# (name, gin files, bindings, parameters to read back)
CASES = [(f'parse:{f}', [f], [DATA_DIR], []) for f in GIN_FILES] + [
    (f'unbound:{f}', [f], [], []) for f in GIN_FILES] + [
    (f'layered:{platform}', ['ucf101_a0_transfer.gin', platform], [DATA_DIR],
     ['build_model.use_sync_bn', 'build_inputs.per_replica_batch_size',
      'build_model.freeze_backbone'])
    for platform in ('platforms/multi_gpu.gin', 'platforms/tpu.gin')] + [
    ('stream', ['ucf101_a0_stream.gin'], [DATA_DIR],
     ['build_model.stream', '%PRETRAINED', 'build_inputs.frame_step'])] + [
    (f'recipe:{f}', [f], [DATA_DIR], _RECIPE)
    for f in ('ucf101_a0_tutorial.gin', 'ucf101_a0_transfer.gin')]
# (name, gin files, bindings): made into `ExperimentConfig` by
# `configure.experiment_config`, as `movinet-train` makes it.
_LOCAL_DATA = "build_inputs.data_dir = '/data/x'"  # not the synthetic cache
TYPED_CASES = [(f'typed:{f}', [f], [DATA_DIR, _LOCAL_DATA])
               for f in GIN_FILES if not f.startswith('platforms/')] + [
    ('typed:bound', ['quickstart.gin'],
     [_LOCAL_DATA, 'build_inputs.num_frames = 4', 'run.epochs = 2',
      "build_optimizer.name = 'sgd'"]),
    ('typed:wrong_type', ['quickstart.gin'],
     [_LOCAL_DATA, "build_inputs.batch_size = 'four'"]),
    ('typed:out_of_range', ['quickstart.gin'],
     [_LOCAL_DATA, 'run.keep_checkpoints = 0']),
    ('typed:unknown_setting', ['quickstart.gin'],
     [_LOCAL_DATA, 'build_inputs.batchsize = 4'])]

_PARSE = r'''
import json, sys
import gin
from trainer import main
import trainer.training
results = {}
for name, files, bindings, queries in json.loads(sys.argv[1]):
  gin.clear_config()
  gin.add_config_file_search_path(main.GIN_DIR)
  try:
    gin.parse_config_files_and_bindings(
        [main.resolve_gin_file(f) for f in files], bindings,
        skip_unknown=False)
    results[name] = {q: gin.query_parameter(q) for q in queries}
  except Exception as error:
    results[name] = {'error': str(error).splitlines()[0]}
from trainer import configure, settings
import dataclasses
for name, files, bindings in json.loads(sys.argv[2]):
  try:
    config = configure.experiment_config(
        [main.resolve_gin_file(f) for f in files], bindings,
        search_paths=[main.GIN_DIR])
    operative = configure.operative_config()
    # What `run` writes for a config made in Python, read back by gin.
    again = configure.experiment_config([], config.describe().splitlines())
    results[name] = {'config': dataclasses.asdict(config),
                     'operative': operative,
                     'described': dataclasses.asdict(again)}
  except settings.SettingError as error:
    results[name] = {'error': str(configure.setting_error(error))}
  except Exception as error:
    results[name] = {'error': str(error).splitlines()[0]}
print(json.dumps({'default': main.DEFAULT_GIN_FILE, 'results': results}))
'''


@pytest.fixture(scope='module')
def parsed():
  result = subprocess.run(
      [sys.executable, '-c', _PARSE, json.dumps(CASES),
       json.dumps(TYPED_CASES)], capture_output=True,
      text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_expected_files_exist(parsed):
  assert {'quickstart.gin', 'ucf101_a0_transfer.gin', 'ucf101_a0_stream.gin',
          'ucf101_a0_tutorial.gin',
          'platforms/multi_gpu.gin', 'platforms/tpu.gin'} <= set(GIN_FILES)
  assert parsed['default'] in GIN_FILES


@pytest.mark.parametrize('name', GIN_FILES)
def test_parses_and_has_a_header(name, parsed):
  # Unknown configurables or parameters would fail (skip_unknown=False).
  assert parsed['results'][f'parse:{name}'] == {}
  with open(os.path.join(GIN_DIR, name), encoding='utf-8') as f:
    text = f.read()
  assert text.startswith('#')
  header = text.split('\n\n')[0]
  assert 'Command' in header and 'movinet-train' in header
  assert 'Required macros' in header
  unbound = parsed['results'][f'unbound:{name}']
  required = header.split('Required macros:')[1].split('Command')[0]
  if 'DATA_DIR' in required:  # (maybe by an include) named when unbound
    assert 'DATA_DIR' in unbound['error']
  else:
    assert unbound == {}


@pytest.mark.parametrize('platform', ['platforms/multi_gpu.gin',
                                      'platforms/tpu.gin'])
def test_platforms_layer_on_an_experiment(platform, parsed):
  assert parsed['results'][f'layered:{platform}'] == {
      'build_model.use_sync_bn': True,
      'build_inputs.per_replica_batch_size': 8,
      'build_model.freeze_backbone': True}


def test_stream_file_overrides_the_transfer_recipe(parsed):
  values = parsed['results']['stream']
  assert values['build_model.stream'] is True
  assert values['%PRETRAINED'].endswith('movinet_a0_stream.tar.gz')
  assert values['build_inputs.frame_step'] == 3


_K600_A0 = ('https://storage.googleapis.com/tf_model_garden/vision/movinet/'
            'movinet_a0_base.tar.gz')


@pytest.mark.parametrize('name,expected', [
    # TensorFlow's MoViNet tutorial: 8 frames 0.6 s apart (every 15th at
    # 25 fps; every 3rd of the 5 fps records), 224 x 224 with
    # resize_with_pad, batch 8, A0 base from K600 with the backbone frozen,
    # the official classifier's dropout (0), Adam 1e-3, 2 epochs.
    ('ucf101_a0_tutorial.gin', [8, 8, 3, 224, 'pad', False, 'a0', _K600_A0,
                                True, 0.0, 'adam', 1e-3, 2]),
    # The recommended variant: A0's own 172 px, random crops and flips.
    ('ucf101_a0_transfer.gin', [8, 8, 3, 172, 'crop', True, 'a0', _K600_A0,
                                True, 0.2, 'adam', 1e-3, 2]),
])
def test_ucf101_recipes(name, expected, parsed):
  assert parsed['results'][f'recipe:{name}'] == dict(zip(_RECIPE, expected))


@pytest.mark.parametrize('name', [n[len('typed:'):] for n, _, _ in TYPED_CASES
                                  if n[len('typed:'):] in GIN_FILES])
def test_every_experiment_file_makes_a_typed_config(name, parsed):
  result = parsed['results'][f'typed:{name}']
  assert 'error' not in result, result
  assert result['config']['inputs']['data_dir'] == '/data/x'
  assert result['described'] == result['config']


def test_gin_binds_the_typed_config(parsed):
  result = parsed['results']['typed:bound']
  config = result['config']
  assert config['inputs']['batch_size'] == 8                # quickstart.gin
  assert config['inputs']['sampling']['num_frames'] == 4    # the binding
  assert config['inputs']['sampling']['eval_resize'] == 'crop'  # default
  assert config['model']['norm_momentum'] == 0.9
  assert config['optimizer']['name'] == 'sgd'
  assert config['run']['epochs'] == 2
  assert 'build_inputs.num_frames = 4' in result['operative']


@pytest.mark.parametrize('case, message', [
    ('wrong_type', "build_inputs.batch_size='four' must be an int"),
    ('out_of_range', 'run.keep_checkpoints=0 must be at least 1'),
    ('unknown_setting',
     "Configurable 'build_inputs' doesn't have a parameter named 'batchsize'"),
])
def test_a_bad_binding_is_named_as_bound(case, message, parsed):
  assert parsed['results'][f'typed:{case}']['error'].startswith(message)
