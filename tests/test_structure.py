"""The package's shape, read from its source with `ast`.

command (absl flags) -> typed config (gin only at the edge) -> cluster ->
inputs -> model -> fit -> checkpoints, summaries, evaluation. These tests
keep it so: layers import only downwards, gin stays in the commands, only
the cluster knows how several workers are joined, and no module or function
grows past what a reader can hold.
"""

import ast
import pathlib

import pytest

_TRAINER = pathlib.Path(__file__).resolve().parents[1] / 'trainer'
_MODULES = sorted(_TRAINER.rglob('*.py'))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # of code: no docstring, comment or blank line
# The commands and the module that binds gin to the typed config.
_GIN_MODULES = ('main.py', 'configure.py')
# Only the cluster joins workers and works around Keras under them.
_CLUSTER_INTERNALS = ('trainer.training.multi_worker',
                      'trainer.training.strategies')


def _name(path: pathlib.Path) -> str:
  return str(path.relative_to(_TRAINER.parent))


def _imports(path: pathlib.Path) -> list[str]:
  found = []
  for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
    if isinstance(node, ast.ImportFrom) and node.module:
      found.append(node.module)
      found.extend(f'{node.module}.{alias.name}' for alias in node.names)
    elif isinstance(node, ast.Import):
      found.extend(alias.name for alias in node.names)
  return found


def _code_lines(function: ast.AST, source: list[str]) -> int:
  """Lines of `function` holding code: not blank, comment or docstring."""
  body = function.body
  docstring = (body and isinstance(body[0], ast.Expr)
               and isinstance(body[0].value, ast.Constant)
               and isinstance(body[0].value.value, str))
  skipped = (set(range(body[0].lineno, body[0].end_lineno + 1))
             if docstring else set())
  return sum(1 for number in range(function.lineno, function.end_lineno + 1)
             if number not in skipped
             and source[number - 1].strip()
             and not source[number - 1].strip().startswith('#'))


def test_model_and_data_import_nothing_of_training():
  for package in ('model', 'data'):
    for path in (_TRAINER / package).glob('*.py'):
      training = [name for name in _imports(path)
                  if name.startswith('trainer.training')]
      assert not training, (_name(path), training)


def test_only_the_commands_know_gin():
  for path in _MODULES:
    if path.name in _GIN_MODULES and path.parent == _TRAINER:
      continue
    assert 'gin' not in _imports(path), _name(path)


def test_only_the_cluster_knows_how_workers_are_joined():
  for path in (_TRAINER / 'training').glob('*.py'):
    if path.stem in ('cluster', 'multi_worker', 'strategies'):
      continue
    internal = [name for name in _imports(path)
                if name.startswith(_CLUSTER_INTERNALS)]
    assert not internal, (_name(path), internal)


@pytest.mark.parametrize('path', _MODULES, ids=_name)
def test_modules_and_functions_stay_short(path):
  source = path.read_text(encoding='utf-8').splitlines()
  assert len(source) <= MAX_MODULE_LINES, (
      f'{_name(path)} has {len(source)} lines; split it')
  long = [(node.name, _code_lines(node, source))
          for node in ast.walk(ast.parse('\n'.join(source)))
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and _code_lines(node, source) > MAX_FUNCTION_LINES]
  assert not long, (f'{_name(path)}: functions over {MAX_FUNCTION_LINES} '
                   f'lines of code: {long}')
