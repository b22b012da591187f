"""Runs an absl command so that `--help` lists its own flags."""

import sys
from typing import Callable

from absl import app
from absl import flags


def run_command(main: Callable[[list[str]], None], module_name: str) -> None:
  """`app.run(main)`, with the flags defined in `module_name` in `--help`.

  absl's `--help` lists the key flags of the main module, which it knows by
  `sys.argv[0]`. Run as a console script, `sys.argv[0]` is the script's
  wrapper, not the module that defines the flags, so `--help` would list
  none of them; this makes them key flags of `sys.argv[0]` too, and shows
  the module's docstring (its usage and examples) above them.

  Args:
    main: The command's main function, given the remaining arguments.
    module_name: `__name__` of the module that defines the flags.
  """
  values = flags.FLAGS
  for flag in values.get_key_flags_for_module(module_name):
    values.register_key_flag_for_module(sys.argv[0], flag)
  script = sys.modules['__main__']
  if not script.__doc__:
    script.__doc__ = sys.modules[module_name].__doc__
  app.run(main)
