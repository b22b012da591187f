"""Gin at the edge: the typed experiment config from gin files and bindings.

`movinet-train` reads gin files and bindings here, and nowhere else. Each
part of `ExperimentConfig` is a gin configurable named as in
`config.SETTING_NAMES`, whose parameters are the part's fields (and, for
`build_inputs`, those of its `Sampling`), with the dataclasses' defaults:

    build_inputs.batch_size = 16      # InputsConfig.batch_size
    build_inputs.num_frames = 8       # Sampling.num_frames
    build_model.model_id = 'a2'       # ModelConfig.model_id
    build_optimizer.name = 'sgd'      # OptimizerConfig.name
    run.epochs = 20                   # RunConfig.epochs

`synthetic_data_dir` is a configurable too, so that a gin file can say
`build_inputs.data_dir = @synthetic_data_dir()`.
"""

import dataclasses
import inspect
from typing import Callable, Sequence

import gin

from trainer import settings
from trainer.data import prepare
from trainer.data.sampling import Sampling
from trainer.training import config as config_lib


def _signature(*classes) -> inspect.Signature:
  """Keyword-only parameters: the fields of `classes` with their defaults
  (`gin.REQUIRED` for a field without one), except `InputsConfig.sampling`,
  whose own fields are bound instead."""
  parameters = []
  for cls in classes:
    for field in dataclasses.fields(cls):
      if field.name == 'sampling':
        continue
      default = (gin.REQUIRED if field.default is dataclasses.MISSING
                 else field.default)
      parameters.append(inspect.Parameter(
          field.name, inspect.Parameter.KEYWORD_ONLY, default=default))
  return inspect.Signature(parameters)


def _configurable(name: str, make: Callable, *classes):
  """Registers `make(**fields)` with gin as `name`, with the parameters of
  `classes`."""

  def configurable(**values):
    return make(**values)

  configurable.__name__ = configurable.__qualname__ = name
  configurable.__signature__ = _signature(*classes)
  configurable.__doc__ = make.__doc__
  return gin.external_configurable(configurable, name)


def _inputs(**values) -> config_lib.InputsConfig:
  sampling_fields = {field.name for field in dataclasses.fields(Sampling)}
  sampling = Sampling(**{k: v for k, v in values.items()
                         if k in sampling_fields})
  return config_lib.InputsConfig(
      sampling=sampling,
      **{k: v for k, v in values.items() if k not in sampling_fields})


build_inputs = _configurable('build_inputs', _inputs,
                             config_lib.InputsConfig, Sampling)
build_model = _configurable('build_model', config_lib.ModelConfig,
                            config_lib.ModelConfig)
build_optimizer = _configurable('build_optimizer',
                                config_lib.OptimizerConfig,
                                config_lib.OptimizerConfig)
run = _configurable('run', config_lib.RunConfig, config_lib.RunConfig)
synthetic_data_dir = gin.external_configurable(prepare.synthetic_data_dir,
                                               'synthetic_data_dir')


def experiment_config(gin_files: list[str], bindings: list[str],
                      search_paths: Sequence[str] = ()
                      ) -> config_lib.ExperimentConfig:
  """Parses `gin_files` then `bindings` and makes the experiment config.

  `search_paths` are where gin looks for the files a gin file includes.

  Raises:
    ValueError: gin cannot parse them, or a setting is wrong
      (`settings.SettingError`, naming the part: `InputsConfig.batch_size=
      'four' must be an int`; see `setting_error`).
    RuntimeError: gin's error for a required setting that is not bound.
  """
  gin.clear_config()
  for path in search_paths:
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(gin_files, bindings)
  return config_lib.ExperimentConfig(
      inputs=build_inputs(), model=build_model(),
      optimizer=build_optimizer(), run=run())


def operative_config() -> str:
  """The settings the last `experiment_config` used, as gin text."""
  return gin.operative_config_str()


def setting_error(error: settings.SettingError) -> settings.SettingError:
  """`error` with the setting named as users bind it
  (`build_inputs.batch_size`, not `InputsConfig.batch_size`)."""
  return error.renamed(config_lib.SETTING_NAMES.get(error.owner, error.owner))
