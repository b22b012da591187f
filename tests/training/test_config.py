"""The typed experiment config: each part checks itself when made.

How gin binds it (`trainer.configure`) is tested in a fresh process, in
`test_gin_files.py`.
"""

import dataclasses

import pytest

from trainer import settings
from trainer.data.sampling import Sampling
from trainer.training.config import ExperimentConfig
from trainer.training.config import InputsConfig
from trainer.training.config import ModelConfig
from trainer.training.config import OptimizerConfig
from trainer.training.config import RunConfig

GIB = 2**30


@pytest.mark.parametrize('make, message', [
    (lambda: InputsConfig('d', batch_size='four'),
     "InputsConfig.batch_size='four' must be an int"),
    (lambda: InputsConfig('d', batch_size=4.5),
     'InputsConfig.batch_size=4.5 must be an int'),
    (lambda: InputsConfig('d', batch_size=True),
     'InputsConfig.batch_size=True must be an int'),
    (lambda: InputsConfig(data_dir=3), 'InputsConfig.data_dir=3 must be a str'),
    (lambda: InputsConfig('d', eval_batch_size='8'),
     "InputsConfig.eval_batch_size='8' must be an int or None"),
    (lambda: InputsConfig('d', batch_size=0),
     'InputsConfig.batch_size=0 must be at least 1'),
    (lambda: Sampling(num_frames='8'),
     "Sampling.num_frames='8' must be an int"),
    (lambda: Sampling(train_resize='stretch'),
     "Sampling.train_resize='stretch' is not one of crop, pad"),
    (lambda: Sampling(min_crop_area=0.0),
     'Sampling.min_crop_area=0.0 must lie in (0, 1]'),
    (lambda: ModelConfig(model_id='b0'),
     "ModelConfig.model_id='b0' is not one of a0, a1, a2, a3, a4, a5, t0"),
    (lambda: ModelConfig(stream='yes'),
     "ModelConfig.stream='yes' must be a bool"),
    (lambda: ModelConfig(dropout_rate=1.0),
     'ModelConfig.dropout_rate=1.0 must lie in [0, 1)'),
    (lambda: OptimizerConfig(name='lamb'),
     "OptimizerConfig.name='lamb' is not one of adam, adamw, sgd, rmsprop"),
    (lambda: OptimizerConfig(schedule='step'),
     "OptimizerConfig.schedule='step' is not one of constant, cosine"),
    (lambda: OptimizerConfig(learning_rate=0.0),
     'OptimizerConfig.learning_rate=0.0 must be > 0'),
    (lambda: OptimizerConfig(warmup_epochs=-1.0),
     'OptimizerConfig.warmup_epochs=-1.0 must be >= 0'),
    (lambda: RunConfig(epochs='1'), "RunConfig.epochs='1' must be an int"),
    (lambda: RunConfig(train_steps=0),
     'RunConfig.train_steps=0 must be at least 1'),
    (lambda: RunConfig(mixed_precision='float16'),
     "RunConfig.mixed_precision='float16' is not one of float32, "
     'mixed_float16, mixed_bfloat16'),
    (lambda: RunConfig(preemption_poll_steps=0),
     'RunConfig.preemption_poll_steps=0 must be at least 1'),
])
def test_a_bad_setting_is_named_with_its_value(make, message):
  with pytest.raises(settings.SettingError) as error:
    make()
  assert str(error.value).startswith(message)


def test_the_defaults_are_valid_and_an_int_is_a_float():
  config = ExperimentConfig(InputsConfig('d'),
                            optimizer=OptimizerConfig(learning_rate=1))
  assert config.optimizer.learning_rate == 1
  assert config.inputs.sampling == Sampling()


def test_configs_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    RunConfig().epochs = 3


@pytest.mark.parametrize('batch_size, per_replica, replicas, expected', [
    (8, None, 1, 8), (8, None, 4, 8), (8, 3, 4, 12)])
def test_global_batch_size(batch_size, per_replica, replicas, expected):
  config = InputsConfig('d', batch_size=batch_size,
                        per_replica_batch_size=per_replica)
  assert config.global_batch_size(replicas) == expected


def test_a_batch_that_does_not_split_over_the_replicas_is_refused():
  with pytest.raises(settings.SettingError) as error:
    InputsConfig('d', batch_size=6).global_batch_size(4)
  assert str(error.value) == (
      'InputsConfig.batch_size=6 (the global batch) must be a multiple of '
      'the 4 replicas; or set per_replica_batch_size instead')


def test_clips_beyond_memory_are_refused_with_the_arithmetic():
  config = InputsConfig('d', sampling=Sampling(num_frames=100000))
  with pytest.raises(settings.SettingError) as error:
    config.check_memory(num_replicas=1, num_workers=1, memory_bytes=24 * GIB)
  # 8 clips x 100000 frames x 172 x 172 x 3 x 4 bytes = 264.5 GiB.
  assert str(error.value) == (
      'Sampling.num_frames=100000 makes one batch of this worker 8 '
      'clips x 100000 frames x 172 x 172 pixels x 3 colours x 4 bytes = '
      '264.5 GiB, more than the 24.0 GiB of memory of this machine; lower '
      'num_frames, image_size or the batch size')


def test_memory_counts_this_workers_share_and_the_eval_clips():
  # 64 clips over 8 workers: 8 clips of 32 frames at 224 px, 0.14 GiB.
  config = InputsConfig('d', batch_size=64,
                        sampling=Sampling(num_frames=32, image_size=224))
  config.check_memory(num_replicas=8, num_workers=8, memory_bytes=GIB // 4)
  with pytest.raises(settings.SettingError, match='64 clips'):
    config.check_memory(num_replicas=8, num_workers=1, memory_bytes=GIB // 4)
  # 8 evaluation clips per video: 64 clips.
  evaluation = dataclasses.replace(config, eval_batch_size=64, eval_clips=8)
  with pytest.raises(settings.SettingError, match='64 clips'):
    evaluation.check_memory(num_replicas=8, num_workers=8,
                            memory_bytes=GIB // 4)


def test_the_default_batch_fits_this_machine():
  InputsConfig('d').check_memory(num_replicas=1, num_workers=1)


def test_hparams_name_every_scalar_setting_as_users_bind_it():
  config = ExperimentConfig(InputsConfig('d', batch_size=16),
                            run=RunConfig(seed=None))
  hparams = config.hparams()
  assert hparams['build_inputs.batch_size'] == 16
  assert hparams['build_inputs.num_frames'] == 8
  assert hparams['build_model.model_id'] == 'a0'
  assert hparams['build_optimizer.name'] == 'adam'
  assert hparams['run.epochs'] == 10
  assert 'run.seed' not in hparams  # None: not a scalar TensorBoard shows
  assert all(isinstance(v, (bool, int, float, str)) for v in hparams.values())


def test_describe_lists_every_setting_as_a_gin_binding():
  lines = ExperimentConfig(InputsConfig('d')).describe().splitlines()
  assert "build_inputs.data_dir = 'd'" in lines
  assert 'build_inputs.num_frames = 8' in lines
  assert 'run.seed = None' in lines
  assert len(lines) == sum(
      len(dataclasses.fields(part)) for part in (
          InputsConfig, Sampling, ModelConfig, OptimizerConfig,
          RunConfig)) - 1  # InputsConfig.sampling: its own fields instead
