"""The launch/ scripts: usage, argument checks, dry runs and fake tools.

Nothing here trains: tools the scripts start (movinet-train, gcloud,
nvidia-smi, tensorboard) are fakes on PATH, or left out of PATH.
"""

import json
import os
import shlex
import shutil
import subprocess
import time

import pytest

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'launch')
SCRIPTS = ['local.sh', 'tpu_vm.sh', 'tensorboard.sh', 'multi_worker.sh']
BASH = shutil.which('bash')

# Records its TF_CONFIG (first line) and argv (one per line) in
# $FAKE_RECORDS/<pid>; worker $FAIL_INDEX exits 3, the others sleep.
FAKE_TOOL = f"""#!{BASH}
{{ printf '%s\\n' "${{TF_CONFIG-}}"; printf '%s\\n' "$@"
}} > "$FAKE_RECORDS/$$"
[[ ${{TF_CONFIG-}} =~ \\"index\\":([0-9]+) ]] && index=${{BASH_REMATCH[1]}}
if [[ -n ${{FAIL_INDEX-}} ]]; then
  [[ ${{index-}} == "$FAIL_INDEX" ]] && {{ sleep 0.3; exit 3; }}
  exec sleep 60
fi
echo "fake $(basename "$0") ${{index-}} ran"
"""
FAKE_NVIDIA_SMI = f"""#!{BASH}
for ((i = 0; i < $FAKE_GPUS; i++)); do
  echo "GPU $i: NVIDIA H100 (UUID: GPU-$i)"
done
"""


def _run(script, *args, env=None, timeout=30):
  return subprocess.run([BASH, os.path.join(LAUNCH, script), *args],
                        env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


def _commands(stdout):
  """The commands a script printed (`+ ` lines), each split into words."""
  return [shlex.split(line[2:]) for line in stdout.splitlines()
          if line.startswith('+ ')]


@pytest.fixture(name='path_without', scope='module')
def _path_without(tmp_path_factory):
  """path_without(tools): a copy of PATH, as one folder of symlinks, that
  lacks `tools`; made once per set of tools."""
  made = {}

  def path_without(tools):
    if tools not in made:
      sandbox = tmp_path_factory.mktemp('path_without')
      for directory in os.environ['PATH'].split(os.pathsep):
        if not os.path.isdir(directory):
          continue
        for name in os.listdir(directory):
          target = os.path.join(directory, name)
          link = sandbox / name
          if (name not in tools and not link.exists()
              and os.access(target, os.X_OK)):
            link.symlink_to(target)
      made[tools] = str(sandbox)
    return made[tools]

  return path_without


@pytest.fixture(name='make_env')
def _make_env(tmp_path, path_without):
  """make_env(fakes, without): an environment whose PATH has the `fakes`
  ({name: script}) first and lacks every tool in `without`."""

  def make_env(fakes=(), without=(), **variables):
    fake_dir = tmp_path / 'fakes'
    fake_dir.mkdir(exist_ok=True)
    for name, text in dict(fakes).items():
      (fake_dir / name).write_text(text)
      (fake_dir / name).chmod(0o755)
    path = path_without(frozenset(without)) if without else os.environ['PATH']
    records = tmp_path / 'records'
    records.mkdir(exist_ok=True)
    return dict(os.environ, PATH=os.pathsep.join([str(fake_dir), path]),
                FAKE_RECORDS=str(records), TMPDIR=str(tmp_path),
                **variables)

  return make_env


def _records(tmp_path):
  """(TF_CONFIG, argv) of every fake run, sorted by TF_CONFIG."""
  runs = []
  for record in (tmp_path / 'records').iterdir():
    tf_config, *argv = record.read_text().splitlines()
    runs.append((tf_config, argv))
  return sorted(runs)


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_pass_bash_n_and_shellcheck(script):
  path = os.path.join(LAUNCH, script)
  subprocess.run([BASH, '-n', path], check=True)
  shellcheck = shutil.which('shellcheck')
  if shellcheck is None:
    pytest.fail('shellcheck not found: install it (Debian: apt-get install '
                'shellcheck; .ci/run does).')
  checked = subprocess.run([shellcheck, '-x', path], capture_output=True,
                           text=True, check=False, cwd=LAUNCH)
  assert checked.returncode == 0, checked.stdout
  assert os.access(path, os.X_OK)


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_shows_usage_with_examples(script):
  result = _run(script, '--help')
  assert result.returncode == 0, result.stderr
  assert 'Usage: launch/' + script in result.stdout
  assert 'Examples:' in result.stdout


@pytest.mark.parametrize('script, args, missing', [
    ('local.sh', [], '--model_dir'),
    ('tpu_vm.sh', ['--zone=z', '--accelerator_type=v4-8', '--',
                   '--model_dir=m'], '--tpu_name'),
    ('tpu_vm.sh', ['--tpu_name=t', '--accelerator_type=v4-8', '--',
                   '--model_dir=m'], '--zone'),
    ('tpu_vm.sh', ['--tpu_name=t', '--zone=z', '--', '--model_dir=m'],
     '--accelerator_type'),
    ('tpu_vm.sh', ['--tpu_name=t', '--zone=z', '--accelerator_type=v4-8'],
     '--model_dir'),
    ('tensorboard.sh', ['--port=6006'], 'MODEL_DIR'),
    ('multi_worker.sh', ['--', '--model_dir=m'], '--local'),
    ('multi_worker.sh', ['--workers=h1:2222,h2:2222', '--', '--model_dir=m'],
     '--index'),
    ('multi_worker.sh', ['--local=2'], '--model_dir'),
])
def test_missing_argument_exits_2_naming_it(script, args, missing):
  result = _run(script, '--dry_run', *args)
  assert result.returncode == 2
  assert missing in result.stderr
  assert len(result.stderr.splitlines()) == 1
  assert not _commands(result.stdout)


@pytest.mark.parametrize('script, args, tool', [
    ('tpu_vm.sh', ['--tpu_name=t', '--zone=z', '--accelerator_type=v4-8',
                   '--', '--model_dir=gs://b/m'], 'gcloud'),
    ('tpu_vm.sh', ['--tpu_name=t', '--zone=z', '--delete'], 'gcloud'),
    ('local.sh', ['--model_dir=m'], 'movinet-train'),
    ('multi_worker.sh', ['--local=2', '--', '--model_dir=m'], 'movinet-train'),
    ('tensorboard.sh', ['m'], 'tensorboard'),
])
def test_missing_tool_exits_2_naming_it(make_env, script, args, tool):
  result = _run(script, *args, env=make_env(without={tool}))
  assert result.returncode == 2
  assert f'{tool} not found' in result.stderr
  assert len(result.stderr.splitlines()) == 1
  assert not _commands(result.stdout)


USER_FLAGS = ['--gin_file=ucf101_a0_transfer.gin',
              """--gin_bindings=DATA_DIR='gs://b/it's $HOME'""",
              '--model_dir=gs://b/runs/a0']


@pytest.mark.parametrize('delete', [False, True])
@pytest.mark.parametrize('repo', [None, 'https://example.com/trainer.git'])
def test_tpu_vm_dry_run_prints_the_session(make_env, delete, repo):
  args = ['--tpu_name=tv', '--zone=us-central2-b', '--accelerator_type=v4-8',
          '--project=p1', '--dry_run']
  args += ['--delete'] if delete else []
  args += [f'--repo={repo}'] if repo else []
  result = _run('tpu_vm.sh', *args, '--', *USER_FLAGS,
                env=make_env(without={'gcloud'}))
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)
  where = ['--zone=us-central2-b', '--project=p1']
  tpu_vm = ['gcloud', 'compute', 'tpus', 'tpu-vm']

  assert commands.pop(0) == tpu_vm + [
      'create', 'tv', *where, '--accelerator-type=v4-8',
      '--version=tpu-ubuntu2204-base']
  if repo is None:  # The checkout goes over as a tarball.
    tar, scp, rm = commands.pop(0), commands.pop(0), commands.pop(0)
    assert tar[:2] == ['tar', '-czf']
    assert tar[-3:] == ['-C', os.path.dirname(LAUNCH), '.']
    assert scp == tpu_vm + ['scp', tar[2], 'tv:movinet-trainer.tar.gz',
                            *where, '--worker=all']
    assert rm == ['rm', '-f', tar[2]]
  install = commands.pop(0)
  assert install[:-1] == tpu_vm + ['ssh', 'tv', *where, '--worker=all']
  steps = install[-1].removeprefix('--command=').split(' && ')
  fetch = ([f'[ -d movinet-trainer ] || git clone --depth=1 {repo} '
            'movinet-trainer'] if repo else
           ['mkdir -p movinet-trainer',
            'tar -xzf ~/movinet-trainer.tar.gz -C movinet-trainer'])
  assert steps[:len(fetch) + 1] == [*fetch, 'cd movinet-trainer']
  # Then uv makes a Python 3.11 venv and installs the package into it with
  # tensorflow-tpu in place of tensorflow (excluded: the two distributions
  # would share site-packages/tensorflow).
  get_uv, make_venv, pip_install = steps[len(fetch) + 1:]
  assert get_uv == 'python3 -m pip install --user uv==0.13.9'
  assert shlex.split(make_venv) == [
      'python3', '-m', 'uv', 'venv', '--python=3.11', '--managed-python',
      '--allow-existing', '$HOME/movinet-venv']
  excluded, pip_install = pip_install.split(' | ')
  assert excluded == 'echo tensorflow'
  assert shlex.split(pip_install) == [
      'python3', '-m', 'uv', 'pip', 'install', '--python=$HOME/movinet-venv',
      '--excludes=-', '-e', '.', 'tensorflow-tpu==2.20.0', 'libtpu==0.0.14']

  start = commands.pop(0)
  assert start[:-1] == install[:-1]
  remote = shlex.split(start[-1].removeprefix('--command='))
  # movinet-train is the venv's: its bin/ leads PATH.
  assert remote[:6] == ['cd', 'movinet-trainer', '&&', 'export',
                        'PATH=$HOME/movinet-venv/bin:$PATH', '&&']
  train = remote[remote.index('movinet-train'):remote.index('>')]
  assert train == ['movinet-train', '--strategy=tpu', '--tpu=local',
                   *USER_FLAGS, '--gin_file=platforms/tpu.gin']
  assert remote[remote.index('movinet-train') - 2:][:2] == ['setsid', 'nohup']
  assert remote[remote.index('>') + 1] == '~/movinet-train.log'

  stream = commands.pop(0)
  assert stream[:-1] == tpu_vm + ['ssh', 'tv', *where, '--worker=0']
  assert 'tail -n +1 -F' in stream[-1] and '~/movinet-train.log' in stream[-1]
  if delete:
    assert commands.pop(0) == tpu_vm + ['delete', 'tv', *where, '--quiet']
  assert not commands


def test_tpu_vm_delete_only(make_env):
  result = _run('tpu_vm.sh', '--tpu_name=tv', '--zone=z', '--delete',
                '--dry_run', env=make_env(without={'gcloud'}))
  assert result.returncode == 0, result.stderr
  assert _commands(result.stdout) == [
      ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'tv', '--zone=z',
       '--quiet']]


def _alive(pid):
  """Whether process `pid` runs (a zombie, left unreaped by a container's
  init, does not)."""
  try:
    with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
      return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except FileNotFoundError:
    return False
  except OSError:  # no /proc
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    return True


def _tf_config(words):
  """The TF_CONFIG a printed `TF_CONFIG=... movinet-train ...` sets."""
  assert words[0].startswith('TF_CONFIG=')
  return json.loads(words[0].removeprefix('TF_CONFIG='))


def test_multi_worker_local_dry_run_prints_two_workers():
  result = _run('multi_worker.sh', '--local=2', '--dry_run', '--',
                '--model_dir=/tmp/x')
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)
  assert len(commands) == 2
  configs = [_tf_config(words) for words in commands]
  workers = configs[0]['cluster']['worker']
  assert len(workers) == 2
  assert [w.split(':')[0] for w in workers] == ['127.0.0.1'] * 2
  assert len({w.split(':')[1] for w in workers}) == 2
  for index, (words, config) in enumerate(zip(commands, configs)):
    assert config == {'cluster': {'worker': workers},
                      'task': {'type': 'worker', 'index': index}}
    assert words[1:4] == ['movinet-train', '--strategy=multi_worker',
                          '--model_dir=/tmp/x']
    assert words[4] == '>' and words[5].endswith(f'worker-{index}.log')


def test_multi_worker_cluster_dry_run_prints_this_hosts_config():
  result = _run('multi_worker.sh', '--workers=h1:2222,h2:2223', '--index=1',
                '--dry_run', '--', '--model_dir=gs://b/m')
  assert result.returncode == 0, result.stderr
  [words] = _commands(result.stdout)
  assert _tf_config(words) == {'cluster': {'worker': ['h1:2222', 'h2:2223']},
                               'task': {'type': 'worker', 'index': 1}}
  assert words[1:] == ['movinet-train', '--strategy=multi_worker',
                       '--model_dir=gs://b/m']


def test_multi_worker_local_runs_every_worker(make_env, tmp_path):
  env = make_env({'movinet-train': FAKE_TOOL})
  result = _run('multi_worker.sh', '--local=2', f'--log_dir={tmp_path}/logs',
                '--', '--model_dir=/tmp/x', env=env)
  assert result.returncode == 0, result.stderr
  assert 'fake movinet-train 0 ran' in result.stdout  # worker 0, streamed
  assert 'fake movinet-train 1 ran' in (tmp_path / 'logs' /
                                        'worker-1.log').read_text()
  runs = _records(tmp_path)
  configs = [json.loads(tf_config) for tf_config, _ in runs]
  assert [c['task'] for c in configs] == [
      {'type': 'worker', 'index': 0}, {'type': 'worker', 'index': 1}]
  assert configs[0]['cluster'] == configs[1]['cluster']
  assert len(set(configs[0]['cluster']['worker'])) == 2
  assert [argv for _, argv in runs] == [
      ['--strategy=multi_worker', '--model_dir=/tmp/x']] * 2


def test_multi_worker_local_stops_all_when_one_fails(make_env, tmp_path):
  env = make_env({'movinet-train': FAKE_TOOL}, FAIL_INDEX='1')
  start = time.monotonic()
  result = _run('multi_worker.sh', '--local=3', '--', '--model_dir=/tmp/x',
                env=env, timeout=30)
  assert time.monotonic() - start < 10
  assert result.returncode == 3
  assert 'worker 1 exited with status 3' in result.stderr
  pids = [int(p.name) for p in (tmp_path / 'records').iterdir()]
  assert len(pids) == 3
  time.sleep(0.2)
  assert not [pid for pid in pids if _alive(pid)]  # the others were stopped


@pytest.mark.parametrize('gpus, strategy_flags', [
    (None, ['--strategy=auto', '--model_dir=m']),
    (1, ['--strategy=auto', '--model_dir=m']),
    (2, ['--strategy=mirrored', '--model_dir=m', '--gin_file=quickstart.gin',
         '--gin_file=platforms/multi_gpu.gin']),
])
def test_local_runs_movinet_train(make_env, tmp_path, gpus, strategy_flags):
  fakes = {'movinet-train': FAKE_TOOL}
  if gpus is not None:
    fakes['nvidia-smi'] = FAKE_NVIDIA_SMI
  env = make_env(fakes, without={'nvidia-smi'}, FAKE_GPUS=str(gpus))
  result = _run('local.sh', '--model_dir=m', env=env)
  assert result.returncode == 0, result.stderr
  assert _commands(result.stdout) == [['movinet-train', *strategy_flags]]
  assert 'fake movinet-train  ran' in result.stdout
  assert _records(tmp_path) == [('', strategy_flags)]


def test_tensorboard_runs_tensorboard(make_env, tmp_path):
  env = make_env({'tensorboard': FAKE_TOOL})
  result = _run('tensorboard.sh', 'gs://b/runs/a0', '--port=6010', env=env)
  assert result.returncode == 0, result.stderr
  expected = ['--logdir=gs://b/runs/a0', '--port=6010']
  assert _commands(result.stdout) == [['tensorboard', *expected]]
  assert _records(tmp_path) == [('', expected)]
