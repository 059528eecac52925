"""`zoo-launch tpu ACTION`: a training run on a Cloud TPU VM, one host or a slice of several, around the `gcloud` CLI.

  zoo-launch tpu create --name=N --zone=Z --accelerator=v4-32 [--spot | --reserved] [--queued] [--runtime=VERSION]
  zoo-launch tpu run    --name=N --zone=Z --workdir=gs://BUCKET/run [--watch] [create's options] -- TRAIN_ARGS
  zoo-launch tpu status | logs [-f] [--worker=K] | stop | delete   --name=N --zone=Z

`run` ships the code of the checkout's last commit (`git archive HEAD` of what a run needs: the package, configs/,
projects/, the lock file), copies it to every worker, installs the locked requirements and jax's TPU wheel once per
VM (a marker per lock file in ~/zoo/venv), installs the commit's zoo in that venv and starts `zoo-train
--workdir=WORKDIR TRAIN_ARGS` on all workers detached from ssh, each writing ~/zoo/run.log (and run.pid, then
run.exit when it ends). With create's options and no TPU of that name, it creates one first. On a slice of several
hosts the workdir must be a bucket every worker reaches (gs://...).

`--watch` keeps the run going: every --poll_seconds it reads the TPU's state and each worker's run. A preempted TPU
(a node PREEMPTED or TERMINATED, a queued resource FAILED, SUSPENDING or SUSPENDED, or gone) is deleted, created
again with create's options and the same command started, which resumes from the workdir's newest checkpoint. It
ends when every worker exited 0 with the final step ("step N/N") in its log; a worker that exits otherwise stops the
others and ends the watch with its last log line; after --max_recreations preemptions it gives up.

`--dry_run` prints every gcloud command instead of running it (the worker count then comes from --accelerator).
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from zoo.errors import UserError

ACTIONS = ('create', 'run', 'status', 'logs', 'stop', 'delete')
# Runtime (software) versions by TPU generation, as Cloud TPU's documentation lists them for jax.
RUNTIMES = {'v2': 'tpu-ubuntu2204-base', 'v3': 'tpu-ubuntu2204-base', 'v4': 'tpu-ubuntu2204-base',
            'v5litepod': 'v2-alpha-tpuv5-lite', 'v5p': 'v2-alpha-tpuv5', 'v6e': 'v2-alpha-tpuv6e'}
PREEMPTED_NODE = {'PREEMPTED', 'TERMINATED'}
PREEMPTED_QUEUED = {'FAILED', 'SUSPENDING', 'SUSPENDED'}
# What `run` ships: the commit's files a training needs (tests and docs stay home).
SHIPPED = ('zoo', 'configs', 'projects', 'pyproject.toml', 'README.md', 'requirements.txt', 'requirements-lock.txt')
LIBTPU_INDEX = 'https://storage.googleapis.com/jax-releases/libtpu_releases.html'


def add_parser(sub) -> None:
  """The `tpu` subcommand and its actions, on zoo-launch's subparsers `sub`."""
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument('--name', required=True, help='the TPU VM (and queued resource) name')
  common.add_argument('--zone', required=True)
  common.add_argument('--project', help='the Google Cloud project (default: gcloud\'s configured one)')
  common.add_argument('--dry_run', action='store_true', help='print the gcloud commands; run none')
  spec = argparse.ArgumentParser(add_help=False)
  spec.add_argument('--accelerator', help='accelerator type, e.g. v4-32, v5litepod-16')
  spec.add_argument('--runtime', help='TPU runtime version (default: the one for the accelerator\'s generation)')
  kind = spec.add_mutually_exclusive_group()
  kind.add_argument('--spot', action='store_true', help='a spot TPU: cheaper, may be preempted at any time')
  kind.add_argument('--reserved', action='store_true', help='from the project\'s reservation')
  spec.add_argument('--queued', action='store_true', help='through a queued resource (waits for capacity)')
  tpu = sub.add_parser('tpu', help='a run on a Cloud TPU VM (see zoo/commands/launch_tpu.py)')
  actions = tpu.add_subparsers(dest='action', required=True)
  actions.add_parser('create', parents=[common, spec], help='create the TPU VM or queued resource')
  run = actions.add_parser('run', parents=[common, spec], help='ship the last commit and start zoo-train on all '
                           'workers: zoo-launch tpu run ... -- --config=...')
  run.add_argument('--workdir', required=True, help='the run\'s workdir: gs://BUCKET/PATH for several hosts')
  run.add_argument('--watch', action='store_true', help='recreate the TPU after a preemption and restart the run '
                   'until it ends')
  run.add_argument('--max_recreations', type=int, default=20, help='preemptions --watch survives before giving up')
  run.add_argument('--poll_seconds', type=float, default=60.0, help='how often --watch looks')
  actions.add_parser('status', parents=[common], help='the TPU\'s state and each worker\'s step and last log line')
  logs = actions.add_parser('logs', parents=[common], help='a worker\'s run.log')
  logs.add_argument('-f', '--follow', action='store_true')
  logs.add_argument('--worker', type=int, default=0)
  logs.add_argument('--lines', type=int, default=50)
  actions.add_parser('stop', parents=[common], help='SIGTERM the run on every worker: it checkpoints and exits')
  actions.add_parser('delete', parents=[common], help='delete the TPU VM (and its queued resource)')


class Tpu(NamedTuple):
  state: str  # the node's state (READY, CREATING, PREEMPTED, ...), else the queued resource's, else 'GONE'
  workers: int | None
  queued: bool

  @property
  def preempted(self) -> bool:
    return self.state == 'GONE' or self.state in PREEMPTED_NODE or (self.queued and self.state in PREEMPTED_QUEUED)


def hosts(accelerator: str) -> int | None:
  """The worker VMs of an accelerator type (v4-32: 16 chips on 4 hosts); None for a type not known here."""
  generation, _, size = (accelerator or '').rpartition('-')
  if not size.isdigit():
    return None
  n = int(size)
  if generation in ('v2', 'v3', 'v4', 'v5p'):  # n TensorCores: 8 per host
    return max(n // 8, 1)
  if generation in ('v5litepod', 'v5e', 'v6e'):  # n chips: up to 8 on one host, else 4 per host
    return 1 if n <= 8 else n // 4
  return None


def last_line(text: str) -> str:
  lines = [line for line in (text or '').strip().splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith('ERROR:')]
  return (errors or lines or ['(no output)'])[-1]


class Cloud:
  """The gcloud commands of one TPU; with dry_run each is printed and answered as if it succeeded."""

  def __init__(self, args):
    self.args = args
    self.gcloud = shutil.which('gcloud')
    if self.gcloud is None and not args.dry_run:
      raise UserError('gcloud not found on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/'
                      'install), then `gcloud auth login` and `gcloud config set project PROJECT`')

  def command(self, *words, worker=None) -> list[str]:
    where = [f'--zone={self.args.zone}'] + ([f'--project={self.args.project}'] if self.args.project else [])
    return ['gcloud', 'compute', 'tpus', *words, *where] + ([f'--worker={worker}'] if worker is not None else [])

  def call(self, command: list[str], capture=True, quiet_dry=False) -> subprocess.CompletedProcess:
    if self.args.dry_run:
      if not quiet_dry:
        print(shlex.join(command))
      return subprocess.CompletedProcess(command, 0, '', '')
    return subprocess.run([self.gcloud, *command[1:]], capture_output=capture, text=True)

  def ssh(self, worker: int, script: str, capture=True) -> subprocess.CompletedProcess:
    return self.call(self.command('tpu-vm', 'ssh', self.args.name, worker=worker) + [f'--command={script}'],
                     capture=capture)

  def describe(self) -> Tpu:
    node = self.call(self.command('tpu-vm', 'describe', self.args.name, '--format=json'), quiet_dry=True)
    queued = self.call(self.command('queued-resources', 'describe', self.args.name, '--format=json'),
                       quiet_dry=True)
    for result in (node, queued):
      if result.returncode != 0 and 'NOT_FOUND' not in result.stderr:
        raise UserError(f'gcloud could not describe {self.args.name} in {self.args.zone}: {last_line(result.stderr)}')
    if self.args.dry_run:
      return Tpu('READY', hosts(self.args.accelerator), bool(getattr(self.args, 'queued', False)))
    is_queued = queued.returncode == 0
    if node.returncode == 0:
      info = json.loads(node.stdout)
      return Tpu(info.get('state', 'UNKNOWN'), len(info.get('networkEndpoints') or []) or None, is_queued)
    if is_queued:
      return Tpu(json.loads(queued.stdout).get('state', {}).get('state', 'UNKNOWN'), None, True)
    return Tpu('GONE', None, False)

  def on_workers(self, workers: int, script: str) -> list[subprocess.CompletedProcess]:
    """Runs `script` on every worker at once (one after the other in a dry run); the results in worker order."""
    if self.args.dry_run:
      return [self.ssh(k, script) for k in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, 32)) as pool:
      return list(pool.map(lambda k: self.ssh(k, script), range(workers)))


def create(cloud: Cloud, args) -> None:
  """Creates the TPU of `args` (a queued resource with --queued); a refusal is one line that says what exists."""
  if not args.accelerator:
    raise UserError('give --accelerator (e.g. v4-32) to create a TPU')
  runtime = args.runtime or RUNTIMES.get(args.accelerator.rpartition('-')[0])
  if runtime is None:
    raise UserError(f'no default runtime for {args.accelerator}: give --runtime (gcloud compute tpus versions list '
                    f'--zone={args.zone})')
  if args.queued:
    command = cloud.command('queued-resources', 'create', args.name, f'--node-id={args.name}',
                            f'--accelerator-type={args.accelerator}', f'--runtime-version={runtime}')
  else:
    command = cloud.command('tpu-vm', 'create', args.name, f'--accelerator-type={args.accelerator}',
                            f'--version={runtime}')
  command += ['--spot'] * args.spot + ['--reserved'] * args.reserved
  result = cloud.call(command)
  if result.returncode != 0:
    left = cloud.describe()
    after = ('nothing was created' if left.state == 'GONE' else
             f'{args.name} exists ({left.state}): `zoo-launch tpu delete --name={args.name} --zone={args.zone}` '
             'removes it')
    raise UserError(f'gcloud refused to create {args.name}: {last_line(result.stderr)} ({after})')
  if not args.dry_run:
    print(f'{"queued" if args.queued else "created"} {args.name}: {args.accelerator}'
          f'{", spot" if args.spot else ", reserved" if args.reserved else ""} in {args.zone}', flush=True)


def wait_ready(cloud: Cloud, poll_seconds: float) -> Tpu:
  """Waits until the TPU's node is READY (a queued resource first waits for capacity), or preempted."""
  shown = None
  while True:
    tpu = cloud.describe()
    if tpu.state == 'READY' or tpu.preempted:
      return tpu
    if tpu.state != shown:
      print(f'{cloud.args.name}: {tpu.state}', flush=True)
      shown = tpu.state
    time.sleep(poll_seconds)


def check_train_args(train_args: list[str]) -> None:
  """The zoo-train arguments after `--` of either launcher: a --config, and no --workdir of their own."""
  if not any(a == '--config' or a.startswith('--config=') for a in train_args):
    raise UserError('the training arguments after -- need --config=..., as zoo-train takes them')
  if any(a.startswith('--workdir') for a in train_args):
    raise UserError('give the workdir once, as zoo-launch\'s --workdir (it is passed to zoo-train)')


def check_run(args) -> None:
  check_train_args(args.train_args)
  if args.watch and not args.accelerator:
    raise UserError('--watch recreates the TPU after a preemption: give the options it is created with '
                    '(--accelerator=..., and --spot / --reserved / --queued as at create)')
  if args.max_recreations < 0 or args.poll_seconds <= 0:
    raise UserError('--max_recreations must be >= 0 and --poll_seconds > 0')


class Shipment(NamedTuple):
  archive: str  # the local .tar.gz of the commit
  commit: str
  jax: str  # the lock file's jax version
  lock: str  # a hash of the lock file: the venv is reinstalled when it changes


def ship_commit(folder: str) -> Shipment:
  """`git archive` of HEAD's SHIPPED files into `folder`; warns when the working tree differs from HEAD."""
  def git(*words):
    result = subprocess.run(['git', *words], capture_output=True)
    if result.returncode != 0:
      raise UserError('run zoo-launch tpu run inside the zoo\'s git checkout: it ships the code of its last commit '
                      f'(git: {last_line(result.stderr.decode())})')
    return result.stdout
  root = git('rev-parse', '--show-toplevel').decode().strip()
  commit = git('-C', root, 'rev-parse', '--short=12', 'HEAD').decode().strip()
  if git('-C', root, 'status', '--porcelain', '--untracked-files=no').strip():
    print(f'warning: uncommitted changes are not shipped: the workers run commit {commit}', file=sys.stderr,
          flush=True)
  lock = git('-C', root, 'show', 'HEAD:requirements-lock.txt')
  jax = re.search(rb'^jax==(\S+)', lock, re.M)
  if jax is None:
    raise UserError('requirements-lock.txt of HEAD pins no jax==VERSION: the TPU wheel is installed to match it')
  archive = os.path.join(folder, f'zoo-{commit}.tar.gz')
  git('-C', root, 'archive', '--format=tar.gz', f'--output={archive}', 'HEAD', '--', *SHIPPED)
  return Shipment(archive, commit, jax.group(1).decode(), hashlib.sha256(lock).hexdigest()[:12])


def setup_script(ship: Shipment) -> str:
  """Unpacks the commit under ~/zoo and installs it; the locked requirements only once per VM and lock file."""
  src = f'$HOME/zoo/src-{ship.commit}'
  return '\n'.join([
      'set -e', 'mkdir -p $HOME/zoo',
      f'if [ ! -d {src} ]; then mkdir -p {src}.tmp && tar -xzf $HOME/zoo-{ship.commit}.tar.gz -C {src}.tmp '
      f'&& mv {src}.tmp {src}; fi',
      f'if [ ! -f $HOME/zoo/venv/installed-{ship.lock} ]; then',
      '  python3 -m venv $HOME/zoo/venv',
      f'  $HOME/zoo/venv/bin/pip install --quiet -r {src}/requirements-lock.txt',
      f'  $HOME/zoo/venv/bin/pip install --quiet "jax[tpu]=={ship.jax}" -f {LIBTPU_INDEX}',
      f'  touch $HOME/zoo/venv/installed-{ship.lock}', 'fi',
      f'$HOME/zoo/venv/bin/pip install --quiet --no-deps --force-reinstall {src}'])


def start_script(ship: Shipment, workdir: str, train_args: list[str], workers: int) -> str:
  """Starts zoo-train detached (setsid, nohup), appending to ~/zoo/run.log; refuses while a run is going. The
  processes of several hosts join (zoo/distributed.py) by ZOO_TPU_HOSTS."""
  train = (f'ZOO_TPU_HOSTS={workers} $HOME/zoo/venv/bin/zoo-train '
           + shlex.join([f'--workdir={workdir}', *train_args]))
  detached = f'{train} >> $HOME/zoo/run.log 2>&1 & echo $! > $HOME/zoo/run.pid; wait $!; echo $? > $HOME/zoo/run.exit'
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')
  return '\n'.join([
      'cd $HOME/zoo', 'if [ -f run.pid ] && kill -0 "$(cat run.pid)" 2>/dev/null; then',
      '  echo "a run is going here (pid $(cat run.pid)): zoo-launch tpu stop first" >&2; exit 3', 'fi',
      'rm -f run.pid run.exit', f'echo {shlex.quote(f"=== {stamp}, commit {ship.commit}: {train}")} >> run.log',
      # Nothing of the run may hold ssh's output open, or ssh would return only when the run ends.
      f'cd src-{ship.commit}', f'nohup setsid bash -c {shlex.quote(detached)} > /dev/null 2>&1 < /dev/null &',
      'for i in $(seq 100); do [ -f $HOME/zoo/run.pid ] && exit 0; sleep 0.1; done',
      'echo "zoo-train did not start" >&2; exit 4'])


STATUS = '\n'.join([
    'cd $HOME/zoo 2>/dev/null || { echo "state: not set up"; exit 0; }',
    'if [ -f run.exit ]; then echo "state: exited $(cat run.exit)";',
    'elif [ -f run.pid ] && kill -0 "$(cat run.pid)" 2>/dev/null; then echo "state: running";',
    'else echo "state: not running"; fi',
    'echo "step: $(grep -o "step [0-9]*/[0-9]*" run.log 2>/dev/null | tail -n 1)"',
    'echo "last: $(tail -n 1 run.log 2>/dev/null)"'])
STOP = ('if [ -f $HOME/zoo/run.pid ] && kill -0 "$(cat $HOME/zoo/run.pid)" 2>/dev/null; then '
        'kill -TERM "$(cat $HOME/zoo/run.pid)" && echo "told to stop: it checkpoints, then exits"; '
        'else echo "no run going"; fi')


class Worker(NamedTuple):
  state: str  # 'running', 'exited N', 'not running' (no process, no exit code: the VM restarted), 'not set up',
  # or 'unreachable: ...'
  step: str  # the last 'step N/M' of its log, or ''
  last: str  # its log's last line

  @property
  def at_final_step(self) -> bool:
    done = re.fullmatch(r'step (\d+)/(\d+)', self.step)
    return done is not None and done[1] == done[2]

  @property
  def failed(self) -> bool:
    return self.state.startswith('exited') and self.state != 'exited 0'


def finished(status: list[Worker]) -> bool:
  """Every process exited 0 and the first logged the final step (zoo-train logs 'step N/N' last, then exits 0; a
  SIGTERM also ends it with 0, after its checkpoint, at an earlier step)."""
  return all(w.state == 'exited 0' for w in status) and status[0].at_final_step


def workers_status(cloud: Cloud, workers: int) -> list[Worker]:
  out = []
  for result in cloud.on_workers(workers, STATUS):
    if result.returncode != 0:
      out.append(Worker(f'unreachable: {last_line(result.stderr)}', '', ''))
      continue
    fields = dict(line.partition(': ')[::2] for line in result.stdout.splitlines() if ': ' in line)
    out.append(Worker(fields.get('state', '?'), fields.get('step', ''), fields.get('last', '')))
  return out


def start(cloud: Cloud, args, workers: int, folder: str) -> Shipment:
  """Ships HEAD to every worker, installs it and starts the run; a worker that fails stops the others."""
  ship = ship_commit(folder)
  copy = cloud.call(cloud.command('tpu-vm', 'scp', ship.archive, f'{args.name}:zoo-{ship.commit}.tar.gz',
                                  worker='all'))
  if copy.returncode != 0:
    raise UserError(f'copying the code to {args.name} failed: {last_line(copy.stderr)}')
  print(f'installing commit {ship.commit} on {workers} worker(s)', flush=True)
  scripts = {'setup': setup_script(ship), 'start': start_script(ship, args.workdir, args.train_args, workers)}
  for what, script in scripts.items():
    results = cloud.on_workers(workers, script)
    failed = [(k, r) for k, r in enumerate(results) if r.returncode != 0]
    if failed:
      started = [k for k, r in enumerate(results) if r.returncode == 0] if what == 'start' else []
      for k in started:  # they would wait for the missing process for ever
        cloud.ssh(k, STOP)
      k, result = failed[0]
      raise UserError(f'{what} failed on worker {k} of {args.name} (exit {result.returncode}): '
                      f'{last_line(result.stderr or result.stdout)}'
                      + (f' (stopped the run on worker(s) {started})' if started else ''))
  print(f'started on {workers} worker(s) of {args.name}, logging to ~/zoo/run.log on each: '
        f'zoo-launch tpu status --name={args.name} --zone={args.zone}', flush=True)
  return ship


def run(cloud: Cloud, args) -> int:
  check_run(args)
  tpu = cloud.describe()
  if tpu.state == 'GONE' and not args.accelerator:
    raise UserError(f'no TPU {args.name} in {args.zone}: create it (zoo-launch tpu create ...) or give run '
                    'create\'s options (--accelerator=...)')
  workers = tpu.workers or hosts(args.accelerator) or 1
  if workers > 1 and not args.workdir.startswith('gs://'):
    raise UserError(f'{args.name} has {workers} hosts: the workdir must be a bucket they all reach '
                    f'(--workdir=gs://BUCKET/PATH), not {args.workdir}')
  with tempfile.TemporaryDirectory() as folder:
    if args.dry_run and args.accelerator:
      print(f'# when no TPU {args.name} exists yet:')
    if tpu.state == 'GONE' or args.dry_run and args.accelerator:
      create(cloud, args)
    if not args.dry_run:
      ready = wait_ready(cloud, args.poll_seconds)
      if ready.preempted:
        raise UserError(f'{args.name} is {ready.state} before the run started: run the same command again')
      workers = ready.workers or workers
    existed = tpu.state != 'GONE' and not args.dry_run
    if args.watch and existed and all(w.state == 'running' for w in workers_status(cloud, workers)):
      # The watch of a run already going (its terminal closed, say): watch it rather than start another.
      print(f'a run is going on every worker of {args.name}: watching it', flush=True)
    else:
      start(cloud, args, workers, folder)
    if not args.watch or args.dry_run:
      return 0
    return watch(cloud, args, workers, folder)


def watch(cloud: Cloud, args, workers: int, folder: str) -> int:
  """The --watch loop (module docstring); returns the exit code."""
  recreations = stopped = 0

  def again(what: str) -> None:
    nonlocal recreations
    if recreations == args.max_recreations:
      raise UserError(f'{args.name}: {what} once more than --max_recreations={args.max_recreations}: gave up; the '
                      'workdir holds the newest checkpoint, run the same command to go on')
    recreations += 1
    print(f'{args.name}: {what}; starting again ({recreations}/{args.max_recreations})', flush=True)

  while True:
    time.sleep(args.poll_seconds)
    tpu = cloud.describe()
    if tpu.preempted:
      again(f'preempted ({tpu.state})')
      if tpu.state != 'GONE':
        remove(cloud, args, tpu)
      create(cloud, args)
      ready = wait_ready(cloud, args.poll_seconds)
      if not ready.preempted:  # else the next look recreates it again
        workers = ready.workers or workers
        start(cloud, args, workers, folder)
      continue
    if tpu.state != 'READY':
      continue
    status = workers_status(cloud, workers)
    if finished(status):
      print(f'finished: {status[0].step} on {workers} worker(s) of {args.name}', flush=True)
      return 0
    failed = [(k, w) for k, w in enumerate(status) if w.failed]
    if failed:
      cloud.on_workers(workers, STOP)
      k, w = failed[0]
      raise UserError(f'worker {k} of {args.name} {w.state} at {w.step or "no step"}: {w.last} (the other workers '
                      f'were stopped; zoo-launch tpu logs --worker={k} shows more)')
    if all(w.state in ('not running', 'not set up') for w in status):  # the VM restarted (maintenance) under the run
      again('no run on the workers (the VM restarted)')
      start(cloud, args, workers, folder)
      continue
    # Every process ended by SIGTERM before the final step with the TPU still up, at two looks in a row: someone ran
    # `zoo-launch tpu stop` (a preemption shows as such at the next look).
    stopped = stopped + 1 if all(w.state == 'exited 0' for w in status) else 0
    if stopped == 2:
      print(f'the run on {args.name} was stopped at {status[0].step or "no step"}; run the same command to go on',
            flush=True)
      return 0


def remove(cloud: Cloud, args, tpu: Tpu) -> None:
  if tpu.queued:
    command = cloud.command('queued-resources', 'delete', args.name, '--force', '--quiet')
  else:
    command = cloud.command('tpu-vm', 'delete', args.name, '--quiet')
  result = cloud.call(command)
  if result.returncode != 0:
    raise UserError(f'gcloud could not delete {args.name}: {last_line(result.stderr)}')


def status(cloud: Cloud, args) -> int:
  tpu = cloud.describe()
  print(f'{args.name}: {tpu.state}' + (' (queued resource)' if tpu.queued else '')
        + (f', {tpu.workers} worker(s)' if tpu.workers else ''))
  if tpu.state == 'READY':
    for k, w in enumerate(workers_status(cloud, tpu.workers or 1)):
      print(f'worker {k}: {w.state}' + (f', {w.step}' if w.step else '') + (f' | {w.last}' if w.last else ''))
  return 0


def main(args) -> int:
  cloud = Cloud(args)
  if args.action == 'create':
    create(cloud, args)
    return 0
  if args.action == 'run':
    return run(cloud, args)
  if args.action == 'status':
    return status(cloud, args)
  if args.action == 'logs':
    tail = f'tail -n {args.lines}{" -f" if args.follow else ""} $HOME/zoo/run.log'
    return cloud.ssh(args.worker, tail, capture=False).returncode
  tpu = cloud.describe()
  if tpu.state == 'GONE':
    raise UserError(f'no TPU {args.name} in {args.zone}')
  if args.action == 'stop':
    for k, result in enumerate(cloud.on_workers(tpu.workers or 1, STOP)):
      print(f'worker {k}: {result.stdout.strip() or last_line(result.stderr)}')
    return 0
  remove(cloud, args, tpu)
  print(f'deleted {args.name}; the checkpoints in the workdir stay, the workers\' logs went with them')
  return 0
