"""The package as a user installs it: a wheel, not the source tree.

The wheel is built from the files a release needs (setup.py, pyproject.toml,
README.md, constraints.txt, trainer/, gin/) copied out of the tree, and
installed without its dependencies into a fresh venv that borrows them from
this environment (`--system-site-packages`), so the test does not download
TensorFlow. Every command then runs from an empty directory, so neither
`trainer/` nor `gin/` of the source tree can be found by accident.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow(minutes=0.5)  # the module, on 2 cores

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_RELEASE_FILES = ('setup.py', 'pyproject.toml', 'README.md', 'constraints.txt')
_GIN_FILES = sorted(str(p.relative_to(_ROOT / 'gin'))
                    for p in (_ROOT / 'gin').rglob('*.gin'))
# How a log line starts: TensorFlow's C++ logging ("2026-12-03 08:13:27.12:
# I tensorflow/..."), and absl's ("I1203 08:22:01.18 ...").
_LOG_LINE = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\S+: [IWEF] |'
                       r'[IWEF]\d{4} \d\d:\d\d:)')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """`(venv bin dir, empty working dir, wheel path)`."""
  work = tmp_path_factory.mktemp('package')
  source = work / 'source'
  source.mkdir()
  for name in _RELEASE_FILES:
    shutil.copy2(_ROOT / name, source / name)
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for folder in ('trainer', 'gin'):
    shutil.copytree(_ROOT / folder, source / folder, ignore=ignore)
  wheels = work / 'wheels'
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q',
                  '--wheel-dir', str(wheels), str(source)], check=True,
                 capture_output=True, timeout=600)
  (wheel,) = wheels.glob('movinet_trainer-*.whl')
  venv = work / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages',
                  '--without-pip', str(venv)], check=True, timeout=120)
  bin_dir = venv / 'bin'
  # This pip, installing into the venv's Python. --ignore-installed: this
  # environment's editable install of the same version would otherwise count
  # as installed.
  subprocess.run([sys.executable, '-m', 'pip', '--python',
                  str(bin_dir / 'python'), 'install', '-q', '--no-deps',
                  '--ignore-installed', str(wheel)], check=True,
                 capture_output=True, timeout=300)
  empty = work / 'elsewhere'
  empty.mkdir()
  return bin_dir, empty, wheel


def _run(installed, command, *args, timeout=120):
  bin_dir, empty, _ = installed
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'TF_CPP_MIN_LOG_LEVEL')}
  return subprocess.run([str(bin_dir / command), *args], cwd=empty, env=env,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def test_the_wheel_carries_the_gin_files_and_no_tests(installed):
  _, _, wheel = installed
  names = zipfile.ZipFile(wheel).namelist()
  assert sorted(n.removeprefix('trainer/configs/') for n in names
                if n.endswith('.gin')) == _GIN_FILES
  assert not [n for n in names if n.startswith('tests/')]


def test_the_installed_package_finds_its_gin_files(installed):
  script = ('import trainer, trainer.main as m; print(trainer.__file__); '
            'print(m.resolve_gin_file("quickstart.gin")); '
            'print(m.resolve_gin_file("platforms/tpu.gin"))')
  result = _run(installed, 'python', '-I', '-c', script)
  assert result.returncode == 0, result.stderr
  package, quickstart, tpu = result.stdout.split()
  venv = str(installed[0].parent)
  for path in (package, quickstart, tpu):
    assert path.startswith(venv), path
  assert quickstart.endswith(os.path.join('trainer', 'configs',
                                          'quickstart.gin'))
  assert pathlib.Path(tpu).is_file()


def test_a_packaged_gin_file_is_parsed_by_name(installed):
  # The transfer recipe needs DATA_DIR: the error proves the file was found
  # and parsed, and stops before any training.
  result = _run(installed, 'movinet-train', '--gin_file=ucf101_a0_transfer.gin',
                '--model_dir=run')
  assert result.returncode == 1, result.stderr[-2000:]
  assert 'DATA_DIR' in result.stderr.strip().splitlines()[-1]
  missing = _run(installed, 'movinet-train', '--gin_file=no_such.gin',
                 '--model_dir=run')
  last = missing.stderr.strip().splitlines()[-1]
  assert "--gin_file='no_such.gin' does not exist" in last
  assert os.path.join('trainer', 'configs') in last


@pytest.mark.parametrize('command, flags', [
    ('movinet-train', ['--gin_file', '--gin_bindings', '--model_dir',
                       '--mode', '--strategy', '--tpu', '--cluster_timeout']),
    ('movinet-prepare', ['--source', '--output_dir', '--video_dir',
                         '--ucf101_url', '--num_classes', '--splits',
                         '--split_by', '--fold', '--short_side']),
    ('movinet-demo', ['--model_id', '--stream', '--num_classes',
                      '--checkpoint', '--frames', '--size']),
])
def test_help_lists_the_commands_own_flags_first_thing(installed, command,
                                                       flags):
  result = _run(installed, command, '--help')
  output = result.stdout + result.stderr
  for flag in flags:  # `--[no]stream` for a boolean
    name = re.escape(flag.removeprefix('--'))
    assert re.search(rf'^  --(\[no\])?{name}: \S', output, re.M), (
        flag, output[:3000])
  assert '(default: ' in output
  assert not [line for line in output.splitlines() if _LOG_LINE.match(line)]
  assert f'{command} --' in output  # the usage examples of its docstring
