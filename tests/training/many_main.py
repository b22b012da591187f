"""Runs movinet-train's `main` on many command lines in one process.

    python -m tests.training.many_main CASES_JSON

CASES_JSON is a list of `{"argv": [...], "watch": DIR}`: the flags of one
command line, and a folder that must not change. Each case gets fresh flags
and an empty gin config, then `trainer.main.main` runs as the console script
would; its exit status (`SystemExit.code`, 0 if it returns) and the last line
it wrote to stderr are printed as one JSON list, with whether `watch` changed.

One process imports TensorFlow once for all the cases of the bad-input
tests, instead of once per case. Not the pytest process: there,
tf-models-official (the model tests' oracle) registers gin configurables of
its own that make the project's names ambiguous.
"""

import contextlib
import io
import json
import sys

from absl import flags
import gin

from tests.training import run_helpers
from trainer import main as main_lib


def run_case(argv: list[str], watch: str) -> dict:
  """Runs `main` on one command line; see the module docstring."""
  before = run_helpers.snapshot(watch)
  flags.FLAGS.unparse_flags()
  flags.FLAGS(['movinet-train', *argv])
  gin.clear_config()
  stderr = io.StringIO()
  code = 0
  with contextlib.redirect_stderr(stderr):
    try:
      main_lib.main(['movinet-train'])
    except SystemExit as exit_:
      code = exit_.code
  lines = stderr.getvalue().strip().splitlines()
  return {'code': code, 'last_line': lines[-1] if lines else '',
          'changed': run_helpers.snapshot(watch) != before}


if __name__ == '__main__':
  cases = json.loads(sys.argv[1])
  results = [run_case(case['argv'], case['watch']) for case in cases]
  sys.stdout.write('\n' + json.dumps(results) + '\n')
