"""A layer's constructor arguments kept as attributes, and its `get_config`
read back from them, so no argument is forgotten."""

import inspect


def constructor_config(layer, base_config: dict) -> dict:
  """Adds every named constructor argument of `layer` to `base_config`.

  Each argument must be stored on the layer under its own name.
  """
  for name in _arguments(layer):
    base_config[name] = getattr(layer, name)
  return base_config


def _arguments(layer):
  signature = inspect.signature(type(layer).__init__)
  return [name for name, parameter in signature.parameters.items()
          if name != 'self'
          and parameter.kind is parameter.POSITIONAL_OR_KEYWORD]


def keep_arguments(layer, arguments: dict) -> None:
  """Stores each named constructor argument of `layer` under its own name,
  from `arguments` (the constructor's `locals()`)."""
  for name in _arguments(layer):
    setattr(layer, name, arguments[name])
