"""`get_config` from the constructor signature, so no argument is forgotten."""

import inspect


def constructor_config(layer, base_config: dict) -> dict:
  """Adds every named constructor argument of `layer` to `base_config`.

  Each argument must be stored on the layer under its own name.
  """
  signature = inspect.signature(type(layer).__init__)
  for name, parameter in signature.parameters.items():
    if name != 'self' and parameter.kind is parameter.POSITIONAL_OR_KEYWORD:
      base_config[name] = getattr(layer, name)
  return base_config
