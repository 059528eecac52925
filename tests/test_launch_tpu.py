"""zoo-launch tpu against a fake `gcloud` on PATH that records every call and answers as Cloud TPU's documentation
says: `describe` prints the node's JSON (or NOT_FOUND), `create` / `delete` change what exists, `scp --worker=all`
copies into every worker's home and `ssh --worker=K --command=...` runs the command under bash in worker K's home
(a folder here). There a fake `python3 -m venv` makes a venv whose `pip` records its arguments and whose `zoo-train`
counts steps, resuming from the step it saved in the "bucket" (a folder standing for gs://bucket). So the launcher's
own scripts (install once per VM, detached start, status, SIGTERM) really run; only the cloud is pretend."""
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, console_script

GCLOUD = r'''
import json, os, shutil, signal, subprocess, sys
FAKE = os.environ['FAKE_CLOUD']
state_path = os.path.join(FAKE, 'state.json')
state = json.load(open(state_path)) if os.path.exists(state_path) else {'nodes': {}, 'queued': {}}
argv = sys.argv[1:]
open(os.path.join(FAKE, 'calls.log'), 'a').write(json.dumps(argv) + '\n')
words = [a for a in argv if not a.startswith('--')]
flags = dict(a[2:].partition('=')[::2] for a in argv if a.startswith('--'))
group, verb = words[2], words[3]
name = (words[5] if verb == 'scp' else words[4]).partition(':')[0]
command = f'gcloud.compute.tpus.{group}.{verb}'
HOSTS = {'v4-8': 1, 'v4-16': 2, 'v4-32': 4}

def save():
  json.dump(state, open(state_path, 'w'))

def fail(message, code=1):
  sys.stderr.write(f'ERROR: ({command}) {message}\n'); sys.exit(code)

def home(k):
  return os.path.join(FAKE, 'workers', name, str(k))

def vm_gone():  # the VM's processes die with it, and its disks go
  for k in range(state['nodes'][name]['workers']):
    try:
      os.kill(int(open(os.path.join(home(k), 'zoo', 'run.pid')).read()), signal.SIGKILL)
    except (OSError, ValueError):
      pass
  shutil.rmtree(os.path.join(FAKE, 'workers', name), ignore_errors=True)

def not_found():
  kind = 'nodes' if group == 'tpu-vm' else 'queuedResources'
  fail(f"NOT_FOUND: Resource 'projects/p/locations/{flags['zone']}/{kind}/{name}' was not found")

if flags.get('zone') != 'us-central2-b':
  fail(f"NOT_FOUND: Location {flags.get('zone')} is not found or access is unauthorized.")
if verb == 'create':
  accelerator = flags['accelerator-type']
  if accelerator not in HOSTS:
    fail(f'INVALID_ARGUMENT: Invalid accelerator type {accelerator} in zone us-central2-b')
  state['nodes'][name] = {'state': 'READY', 'acceleratorType': accelerator, 'workers': HOSTS[accelerator]}
  if group == 'queued-resources':
    state['queued'][name] = 'ACTIVE'
  shutil.rmtree(os.path.join(FAKE, 'workers', name), ignore_errors=True)  # new VMs, new disks
  for k in range(HOSTS[accelerator]):
    os.makedirs(home(k))
  save()
  sys.stderr.write(f'Create request issued for: [{name}]\n')
elif verb == 'describe':
  if group == 'queued-resources':
    name in state['queued'] or not_found()
    print(json.dumps({'name': name, 'state': {'state': state['queued'][name]}}))
    sys.exit(0)
  node = state['nodes'].get(name) or not_found()
  preempt = state.get('preempt_at_step')
  if preempt and node['state'] == 'READY':
    log = os.path.join(home(0), 'zoo', 'run.log')
    steps = [int(l.split()[1].split('/')[0]) for l in open(log) if l.startswith('step ')] if os.path.exists(log) else []
    if steps and steps[-1] >= preempt:
      vm_gone()
      node['state'], state['preempt_at_step'] = 'PREEMPTED', None
      if name in state['queued']:  # a queued resource's node is deleted with its VMs
        state['queued'][name] = 'SUSPENDED'
        del state['nodes'][name]
      save()
      name in state['nodes'] or not_found()
  print(json.dumps({'name': name, 'state': node['state'], 'acceleratorType': node['acceleratorType'],
                    'networkEndpoints': [{'ipAddress': f'10.0.0.{k}'} for k in range(node['workers'])]}))
elif verb == 'delete':
  if group == 'queued-resources':
    name in state['queued'] or not_found()
    del state['queued'][name]
  name in state['nodes'] or group == 'queued-resources' or not_found()
  if name in state['nodes']:
    vm_gone()
    del state['nodes'][name]
  save()
elif verb == 'scp':
  node = state['nodes'].get(name) or not_found()
  for k in range(node['workers']):
    shutil.copy(words[4], os.path.join(home(k), words[5].partition(':')[2]))
elif verb == 'ssh':
  node = state['nodes'].get(name) or not_found()
  k = int(flags['worker'])
  env = dict(os.environ, HOME=home(k), FAKE_WORKER=str(k), PATH=os.path.dirname(__file__) + ':' + os.environ['PATH'])
  sys.exit(subprocess.run(['bash', '-c', flags['command']], env=env).returncode)
'''

PYTHON3 = r'''
import os, sys
assert sys.argv[1:3] == ['-m', 'venv'], sys.argv
bin_dir = os.path.join(sys.argv[3], 'bin')
os.makedirs(bin_dir, exist_ok=True)
here = os.path.dirname(__file__)
for name in ('pip', 'zoo-train'):
  with open(os.path.join(bin_dir, name), 'w') as f:
    f.write(open(os.path.join(here, f'venv-{name}')).read())
  os.chmod(os.path.join(bin_dir, name), 0o755)
'''

PIP = r'''
import os, sys
open(os.path.join(os.path.dirname(__file__), '..', 'pip.log'), 'a').write(' '.join(sys.argv[1:]) + '\n')
if os.environ.get('FAKE_FAIL_SETUP') == os.environ['FAKE_WORKER'] and '-r' in sys.argv:
  sys.exit('ERROR: Could not find a version that satisfies the requirement jax==0.10.2')
'''

TRAIN = r'''
import os, signal, sys, time
workdir = [a for a in sys.argv if a.startswith('--workdir=')][0].split('=', 1)[1]
saved = os.path.join(os.environ['FAKE_BUCKET'], workdir.removeprefix('gs://').replace('/', '_'))
worker, total = os.environ['FAKE_WORKER'], int(os.environ['FAKE_STEPS'])
step = int(open(saved).read()) if os.path.exists(saved) else 0
def stop(*_):
  print(f'SIGTERM received: stopped after step {step} with its checkpoint written', flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print('resuming from step', step, 'in', os.getcwd(), ' '.join(sys.argv[1:]), flush=True)
while step < total:
  time.sleep(0.1)
  step += 1
  if os.environ.get('FAKE_FAIL_TRAIN') == worker and step == 5:
    print('FloatingPointError: 3 steps in a row had a non-finite loss', flush=True); sys.exit(1)
  print(f'step {step}/{total}  loss 0.1', flush=True)
  if worker == '0':
    open(saved + '.tmp', 'w').write(str(step)); os.replace(saved + '.tmp', saved)
print(f'finished at step {total}/{total}', flush=True)
'''

NAME = ['--name=rs50', '--zone=us-central2-b']
TRAIN_ARGS = ['--', '--config=configs/resnet_rs.py:50-160', '--config.num_train_steps=60']


@pytest.fixture(scope='module')
def checkout(tmp_path_factory):
  """A clone of the repository (its last commit is what zoo-launch ships), with a clean working tree."""
  path = tmp_path_factory.mktemp('checkout') / 'zoo'
  subprocess.run(['git', 'clone', '--quiet', '--depth=1', f'file://{ROOT}', str(path)], check=True)
  return path


@pytest.fixture
def cloud(tmp_path):
  """The fake gcloud's folder: its programs, state.json, calls.log, the workers' homes and the bucket."""
  fake = tmp_path / 'cloud'
  (fake / 'bucket').mkdir(parents=True)
  for name, body in (('gcloud', GCLOUD), ('python3', PYTHON3), ('venv-pip', PIP), ('venv-zoo-train', TRAIN)):
    (fake / name).write_text(f'#!{sys.executable}\n{body}')
    (fake / name).chmod(0o755)
  return fake


def fake_env(cloud, **env) -> dict:
  return {**os.environ, 'PATH': f'{cloud}:{os.environ["PATH"]}', 'FAKE_CLOUD': str(cloud),
          'FAKE_BUCKET': str(cloud / 'bucket'), 'FAKE_STEPS': '60', **env}


def launch(checkout, cloud, *args, timeout=120, **env):
  proc = subprocess.run([console_script('zoo-launch'), 'tpu', *args], cwd=checkout, env=fake_env(cloud, **env),
                        capture_output=True, text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr


def calls(cloud) -> list[str]:
  """calls.log condensed: 'group verb', and for ssh which of the launcher's scripts ran on which worker."""
  out = []
  for line in (cloud / 'calls.log').read_text().splitlines():
    argv = json.loads(line)
    call = f'{argv[2]} {argv[3]}'
    if argv[3] == 'ssh':
      script = next(a for a in argv if a.startswith('--command='))
      kind = next(k for k, mark in (('start', 'setsid'), ('setup', 'venv'), ('status', 'state:'),
                                    ('stop', 'kill -TERM'), ('logs', 'tail -n')) if mark in script)
      call = f'{kind} {next(a for a in argv if a.startswith("--worker="))[9:]}'
    if not out or out[-1] != call or argv[3] in ('create', 'delete', 'scp'):
      out.append(call)
  # The launcher reaches the workers in parallel: each block of one script in worker order.
  blocks = itertools.groupby(out, key=lambda c: c.split()[0] if c[-1].isdigit() else c)
  return [c for _, block in blocks for c in sorted(block)]


def home(cloud, k):
  return cloud / 'workers' / 'rs50' / str(k) / 'zoo'


def last_log_line(cloud, k) -> str:
  """Worker k's run.log's last line once its run ended (a stopped run writes its last line just after `stop`)."""
  deadline = time.time() + 20
  while not (home(cloud, k) / 'run.exit').exists() and time.time() < deadline:
    time.sleep(0.05)
  return (home(cloud, k) / 'run.log').read_text().splitlines()[-1]


@pytest.mark.slow
def test_run_watch_recreates_a_preempted_spot_tpu_and_resumes_to_the_end(checkout, cloud):
  """From nothing: creates a spot v4-16 (2 hosts), ships and installs HEAD, starts on both; after its first step the
  TPU is preempted; the watch deletes and recreates it, installs again on the new VMs and restarts the same command,
  which resumes from the bucket's step and ends at 60/60; then the watch ends."""
  (cloud / 'state.json').write_text(json.dumps({'nodes': {}, 'queued': {}, 'preempt_at_step': 1}))
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--accelerator=v4-16', '--spot', '--watch',
                        '--poll_seconds=0.2', '--workdir=gs://bucket/rs50', *TRAIN_ARGS)
  assert rc == 0, err[-3000:]
  assert 'warning' not in err
  lines = out.splitlines()
  assert lines[0] == 'created rs50: v4-16, spot in us-central2-b'
  assert 'rs50: preempted (PREEMPTED); starting again (1/20)' in lines and lines[-1] == (
      'finished: step 60/60 on 2 worker(s) of rs50')
  sequence = calls(cloud)
  once = ['tpu-vm create', 'tpu-vm describe', 'queued-resources describe', 'tpu-vm scp', 'setup 0', 'setup 1',
          'start 0', 'start 1']
  assert sequence[:2] == ['tpu-vm describe', 'queued-resources describe'] and sequence[2:10] == once
  preempted = sequence.index('tpu-vm delete')
  assert sequence[preempted + 1:preempted + 9] == once
  assert sequence[-3:] == ['queued-resources describe', 'status 0', 'status 1']
  assert (cloud / 'bucket' / 'bucket_rs50').read_text() == '60'
  commit = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'], cwd=checkout, capture_output=True,
                          text=True).stdout.strip()
  for k in (0, 1):  # the new VMs: installed once, the same command resumed where the bucket was
    log = (home(cloud, k) / 'run.log').read_text().splitlines()
    assert log[0].endswith(f'commit {commit}: ZOO_TPU_HOSTS=2 $HOME/zoo/venv/bin/zoo-train --workdir=gs://bucket/'
                           'rs50 --config=configs/resnet_rs.py:50-160 --config.num_train_steps=60')
    assert log[1].startswith('resuming from step ') and log[1].split()[3] != '0'
    assert log[1].split()[5].endswith(f'/zoo/src-{commit}')
    assert log[-2:] == ['step 60/60  loss 0.1', 'finished at step 60/60']
    pip = (home(cloud, k) / 'venv' / 'pip.log').read_text().splitlines()
    assert pip[0].startswith('install --quiet -r ') and pip[0].endswith(f'src-{commit}/requirements-lock.txt')
    assert pip[1].startswith('install --quiet jax[tpu]==0.10.2 -f ') and len(pip) == 3
    assert (home(cloud, k) / 'run.exit').read_text().strip() == '0'
  shipped = subprocess.run(['tar', '-tzf', str(cloud / 'workers' / 'rs50' / '0' / f'zoo-{commit}.tar.gz')],
                           capture_output=True, text=True).stdout.split()
  assert 'zoo/trainer.py' in shipped and 'configs/resnet_rs.py' in shipped and not any(
      f.startswith('tests/') for f in shipped)

  # A second run on the same VMs installs the locked requirements no more; status and stop read and signal it.
  (cloud / 'bucket' / 'bucket_rs50').unlink()
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--workdir=gs://bucket/rs50', *TRAIN_ARGS,
                        FAKE_STEPS='100000')
  assert rc == 0 and out.splitlines()[-1].startswith('started on 2 worker(s) of rs50'), err[-2000:]
  assert len((home(cloud, 1) / 'venv' / 'pip.log').read_text().splitlines()) == 4  # only the zoo itself again
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--workdir=gs://bucket/rs50', *TRAIN_ARGS)
  assert rc == 1 and 'start failed on worker 0 of rs50 (exit 3): a run is going here' in err, err[-2000:]
  rc, out, _ = launch(checkout, cloud, 'status', *NAME)
  lines = out.splitlines()
  assert rc == 0 and lines[0] == 'rs50: READY, 2 worker(s)', out
  assert lines[1].startswith('worker 0: running, step ') and '| step ' in lines[1]
  # `run --watch` again (its terminal was closed, say) watches the run that is going; `stop` ends both.
  watcher = subprocess.Popen([console_script('zoo-launch'), 'tpu', 'run', *NAME, '--accelerator=v4-16', '--spot',
                              '--watch', '--poll_seconds=0.2', '--workdir=gs://bucket/rs50', *TRAIN_ARGS],
                             cwd=checkout, env=fake_env(cloud), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  assert watcher.stdout.readline() == 'a run is going on every worker of rs50: watching it\n'
  rc, out, _ = launch(checkout, cloud, 'stop', *NAME)
  assert rc == 0 and out.splitlines() == ['worker 0: told to stop: it checkpoints, then exits',
                                          'worker 1: told to stop: it checkpoints, then exits']
  assert last_log_line(cloud, 1).startswith('SIGTERM received: stopped after step ')
  out, err = watcher.communicate(timeout=60)
  assert watcher.returncode == 0 and re.fullmatch(
      r'the run on rs50 was stopped at step \d+/100000; run the same command to go on', out.strip()), out + err
  rc, out, _ = launch(checkout, cloud, 'logs', *NAME, '--worker=1', '--lines=1')
  assert rc == 0 and out.startswith('SIGTERM received: stopped after step ')
  rc, out, _ = launch(checkout, cloud, 'delete', *NAME)
  assert rc == 0 and calls(cloud)[-1] == 'tpu-vm delete' and not (cloud / 'workers' / 'rs50').exists()


@pytest.mark.slow
def test_watch_recreates_a_suspended_queued_resource(checkout, cloud):
  """A queued resource's preemption: its node gone, the queued resource SUSPENDED; the watch deletes it (--force),
  queues it again and resumes to the end."""
  (cloud / 'state.json').write_text(json.dumps({'nodes': {}, 'queued': {}, 'preempt_at_step': 1}))
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--accelerator=v4-8', '--queued', '--watch',
                        '--poll_seconds=0.2', '--workdir=gs://bucket/rs50', *TRAIN_ARGS)
  assert rc == 0, err[-3000:]
  lines = out.splitlines()
  assert 'rs50: preempted (SUSPENDED); starting again (1/20)' in lines, out
  assert lines[-1] == 'finished: step 60/60 on 1 worker(s) of rs50'
  sequence = calls(cloud)
  deleted = sequence.index('queued-resources delete')
  assert sequence[deleted + 1] == 'queued-resources create' and sequence.count('queued-resources create') == 2
  delete = [json.loads(line) for line in (cloud / 'calls.log').read_text().splitlines() if '"delete"' in line]
  assert delete == [['compute', 'tpus', 'queued-resources', 'delete', 'rs50', '--force', '--quiet',
                     '--zone=us-central2-b']]


@pytest.mark.slow
def test_watch_gives_up_after_max_recreations(checkout, cloud):
  (cloud / 'state.json').write_text(json.dumps({'nodes': {}, 'queued': {}, 'preempt_at_step': 1}))
  rc, _, err = launch(checkout, cloud, 'run', *NAME, '--accelerator=v4-8', '--spot', '--watch', '--max_recreations=0',
                      '--poll_seconds=0.2', '--workdir=gs://bucket/rs50', *TRAIN_ARGS)
  assert rc == 1 and err.strip().splitlines()[-1] == (
      'error: rs50: preempted (PREEMPTED) once more than --max_recreations=0: gave up; the workdir holds the newest '
      'checkpoint, run the same command to go on')
  assert calls(cloud).count('tpu-vm create') == 1


@pytest.mark.slow
def test_a_worker_that_fails_stops_the_others_and_ends_the_watch(checkout, cloud):
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--accelerator=v4-16', '--queued', '--watch',
                        '--poll_seconds=0.2', '--workdir=gs://bucket/rs50', *TRAIN_ARGS, FAKE_FAIL_TRAIN='1',
                        FAKE_STEPS='3000')
  assert rc == 1
  assert err.strip().splitlines()[-1] == (
      'error: worker 1 of rs50 exited 1 at step 4/3000: FloatingPointError: 3 steps in a row had a non-finite loss '
      '(the other workers were stopped; zoo-launch tpu logs --worker=1 shows more)')
  assert out.splitlines()[0] == 'queued rs50: v4-16 in us-central2-b'
  assert json.loads((cloud / 'calls.log').read_text().splitlines()[2])[2:4] == ['queued-resources', 'create']
  assert last_log_line(cloud, 0).startswith('SIGTERM received: stopped after step')
  assert calls(cloud)[-2:] == ['stop 0', 'stop 1']


@pytest.mark.slow
def test_setup_failing_on_one_worker_is_named(checkout, cloud):
  rc, out, err = launch(checkout, cloud, 'run', *NAME, '--accelerator=v4-16', '--workdir=gs://bucket/rs50',
                        *TRAIN_ARGS, FAKE_FAIL_SETUP='1')
  assert rc == 1 and err.strip().splitlines()[-1] == (
      'error: setup failed on worker 1 of rs50 (exit 1): ERROR: Could not find a version that satisfies the '
      'requirement jax==0.10.2')
  assert 'start 0' not in calls(cloud)


def test_dry_run_prints_every_command(checkout, cloud):
  rc, out, err = launch(checkout, cloud, 'run', '--dry_run', *NAME, '--accelerator=v4-32',
                        '--workdir=gs://bucket/rs50', *TRAIN_ARGS)
  assert rc == 0, err[-2000:]
  lines = out.splitlines()
  assert lines[:2] == ['# when no TPU rs50 exists yet:', 'gcloud compute tpus tpu-vm create rs50 '
                       '--accelerator-type=v4-32 --version=tpu-ubuntu2204-base --zone=us-central2-b']
  gcloud = [line for line in lines if line.startswith('gcloud ')]
  assert len(gcloud) == 1 + 1 + 4 + 4  # create, scp, setup and start on each of v4-32's 4 hosts
  assert gcloud[1].startswith('gcloud compute tpus tpu-vm scp ') and gcloud[1].endswith(
      '--zone=us-central2-b --worker=all')
  assert all(f'--worker={k}' in gcloud[2 + k] and f'--worker={k}' in gcloud[6 + k] for k in range(4))
  assert not (cloud / 'calls.log').exists()


@pytest.mark.parametrize('args, message', [
    (['--accelerator=v4-32', '--workdir=/tmp/run'], 'rs50 has 4 hosts: the workdir must be a bucket they all reach '
     '(--workdir=gs://BUCKET/PATH), not /tmp/run'),
    (['--watch', '--workdir=gs://b/r'], '--watch recreates the TPU after a preemption: give the options'),
    (['--workdir=gs://b/r'], 'no TPU rs50 in us-central2-b: create it (zoo-launch tpu create ...) or give run'),
])
def test_run_refuses_before_creating_anything(args, message, checkout, cloud):
  rc, _, err = launch(checkout, cloud, 'run', *NAME, *args, *TRAIN_ARGS)
  assert rc == 1 and message in err.strip().splitlines()[-1], err[-2000:]
  assert all('create' not in line for line in calls(cloud)) if (cloud / 'calls.log').exists() else True


def test_what_gcloud_refuses_is_shown_with_what_exists(checkout, cloud):
  rc, _, err = launch(checkout, cloud, 'create', '--name=rs50', '--zone=europe-nowhere1-a', '--accelerator=v4-8')
  assert rc == 1 and err.strip().splitlines()[-1] == (
      'error: gcloud refused to create rs50: ERROR: (gcloud.compute.tpus.tpu-vm.create) NOT_FOUND: Location '
      'europe-nowhere1-a is not found or access is unauthorized. (nothing was created)')
  rc, _, err = launch(checkout, cloud, 'create', *NAME, '--accelerator=v4-12', '--runtime=tpu-ubuntu2204-base')
  assert rc == 1 and 'Invalid accelerator type v4-12 in zone us-central2-b (nothing was created)' in err
  # A create that fails with the node left behind (here: one that exists already) says how to remove it.
  assert launch(checkout, cloud, 'create', *NAME, '--accelerator=v4-8')[0] == 0
  (cloud / 'gcloud').write_text((cloud / 'gcloud').read_text().replace(
      "if verb == 'create':", "if verb == 'create' and name in state['nodes']:\n  fail('ALREADY_EXISTS: Resource "
      "already exists')\nif verb == 'create':"))
  rc, _, err = launch(checkout, cloud, 'create', *NAME, '--accelerator=v4-8')
  assert rc == 1 and err.strip().endswith('ALREADY_EXISTS: Resource already exists (rs50 exists (READY): '
                                          '`zoo-launch tpu delete --name=rs50 --zone=us-central2-b` removes it)')


def test_without_gcloud_and_with_uncommitted_changes(checkout, cloud, tmp_path):
  env = dict(os.environ, PATH=os.path.dirname(sys.executable))
  proc = subprocess.run([console_script('zoo-launch'), 'tpu', 'status', *NAME], env=env, capture_output=True,
                        text=True, cwd=checkout)
  assert proc.returncode == 1 and proc.stderr.strip().startswith(
      'error: gcloud not found on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)')
  dirty = tmp_path / 'dirty'
  shutil.copytree(checkout, dirty, symlinks=True)
  with open(dirty / 'zoo' / 'trainer.py', 'a') as f:
    f.write('# an edit not committed\n')
  rc, out, err = launch(dirty, cloud, 'run', '--dry_run', *NAME, '--accelerator=v4-8', '--workdir=/tmp/run',
                        *TRAIN_ARGS)
  commit = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'], cwd=dirty, capture_output=True,
                          text=True).stdout.strip()
  assert rc == 0 and f'warning: uncommitted changes are not shipped: the workers run commit {commit}' in err
  proc = subprocess.run([console_script('zoo-launch'), 'tpu', 'run', '--dry_run', *NAME, '--accelerator=v4-8',
                         '--workdir=/tmp/run', *TRAIN_ARGS], env=dict(os.environ), capture_output=True, text=True,
                        cwd=tmp_path.parent)
  assert proc.returncode == 1 and 'run zoo-launch tpu run inside the zoo\'s git checkout' in proc.stderr
