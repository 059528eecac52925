"""zoo-launch slurm: the sbatch script it writes and submits, against fake `sbatch`, `srun` and `scontrol` programs on
PATH that record their arguments and answer as SLURM's documentation says; and the script's own behaviour under
bash: the time-limit SIGTERM reaches the training processes, which checkpoint, and the job is requeued."""
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli

TRAIN_ARGS = ['--', '--config=configs/resnet_rs.py:50-160', '--config.data_dir=/data/tfds dir']


def program(folder, name, body: str) -> str:
  """An executable `name` in `folder` running the Python `body` (sys.argv as the real program's)."""
  path = os.path.join(folder, name)
  with open(path, 'w') as f:
    f.write(f'#!{sys.executable}\nimport os, sys, signal, time\n{body}\n')
  os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
  return path


def fake_sbatch(folder, fail: str | None = None) -> None:
  """`sbatch FILE` records its arguments and answers 'Submitted batch job 4242', or fails with `fail` on stderr."""
  if fail:
    program(folder, 'sbatch', f'sys.stderr.write({fail!r} + "\\n"); sys.exit(1)')
  else:
    program(folder, 'sbatch', 'open(os.path.join(os.path.dirname(__file__), "sbatch.log"), "a").write('
                              '" ".join(sys.argv[1:]) + "\\n"); print("Submitted batch job 4242")')


def test_dry_run_prints_the_script_and_submits_nothing(tmp_path):
  rc, out, err = run_cli('zoo-launch', 'slurm', '--dry_run', f'--workdir={tmp_path}/run', '--nodes=2',
                         '--gpus_per_node=8', '--tasks=gpu', '--time=24:00:00', '--partition=gpu',
                         '--sbatch_arg=--qos=high', '--train=/opt/venv/bin/zoo-train', *TRAIN_ARGS, timeout=60)
  assert rc == 0, err[-2000:]
  lines = out.splitlines()
  for option in ('--job-name=zoo', '--nodes=2', '--ntasks-per-node=8', '--gpus-per-node=8', '--requeue',
                 '--open-mode=append', f'--output={tmp_path}/run/slurm/job-1-%j.out', '--signal=B:TERM@180',
                 '--partition=gpu', '--time=24:00:00', '--qos=high'):
    assert f'#SBATCH {option}' in lines, option
  assert (f"srun --kill-on-bad-exit=1 /opt/venv/bin/zoo-train --workdir={tmp_path}/run "
          "--config=configs/resnet_rs.py:50-160 '--config.data_dir=/data/tfds dir' &") in lines
  assert lines[-1] == f'sbatch {tmp_path}/run/slurm/job-1.sbatch' and not (tmp_path / 'run').exists()


def test_submits_a_new_script_each_time(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  fake_sbatch(str(bin_dir))
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}')
  for n in (1, 2):
    rc, out, err = run_cli('zoo-launch', 'slurm', f'--workdir={tmp_path}/run', *TRAIN_ARGS, env=env, timeout=60)
    assert rc == 0, err[-2000:]
    assert out.strip() == (f'Submitted batch job 4242 ({tmp_path}/run/slurm/job-{n}.sbatch; output '
                           f'{tmp_path}/run/slurm/job-{n}-%j.out)')
  assert (bin_dir / 'sbatch.log').read_text().splitlines() == [f'{tmp_path}/run/slurm/job-{n}.sbatch' for n in (1, 2)]
  script = (tmp_path / 'run' / 'slurm' / 'job-1.sbatch').read_text()
  assert '#SBATCH --ntasks-per-node=1' in script and '--gpus-per-node' not in script


@pytest.mark.parametrize('args, message', [
    (['--workdir=W'], 'give the training arguments after --'),
    (['--workdir=W', '--tasks=gpu', *TRAIN_ARGS], '--tasks=gpu starts one process per GPU: give --gpus_per_node'),
    (['--workdir=W', '--', '--workdir=X', '--config=c.py'], 'give the workdir once'),
    (['--workdir=W', '--', '--config.seed=1'], 'need --config=...'),
    (['--workdir=W', '--nodes=0', *TRAIN_ARGS], '--nodes must be >= 1'),
])
def test_bad_arguments_are_one_line(args, message, tmp_path):
  rc, _, err = run_cli('zoo-launch', 'slurm', *args, timeout=60)
  assert rc == 1 and err.strip().splitlines()[-1].startswith('error: ') and message in err, err[-1000:]


def test_without_sbatch_or_when_sbatch_refuses(tmp_path):
  env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # no sbatch there
  rc, _, err = run_cli('zoo-launch', 'slurm', f'--workdir={tmp_path}/run', *TRAIN_ARGS, env=env, timeout=60)
  assert rc == 1 and 'sbatch not found on PATH: run zoo-launch slurm on a login node' in err
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  fake_sbatch(str(bin_dir), fail='sbatch: error: invalid partition specified: nope')
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}')
  rc, _, err = run_cli('zoo-launch', 'slurm', f'--workdir={tmp_path}/run', '--partition=nope', *TRAIN_ARGS, env=env,
                       timeout=60)
  assert rc == 1 and err.strip().splitlines()[-1] == (
      f'error: sbatch refused {tmp_path}/run/slurm/job-1.sbatch: sbatch: error: invalid partition specified: nope')


TRAIN = '''
log = open(os.environ['RUN_LOG'], 'a')
def stop(*_):
  log.write('checkpointed\\n'); log.flush(); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
log.write('started ' + ' '.join(sys.argv[1:]) + '\\n'); log.flush()
time.sleep(float(os.environ['RUN_SECONDS']))
log.write('finished\\n')
'''


def run_script(tmp_path, seconds: float, terminate: bool):
  """Writes the job's script with a fake zoo-train (TRAIN) and runs it under bash with fake srun and scontrol, as
  SLURM would; with `terminate`, sends the batch shell SIGTERM once training started (the time-limit signal)."""
  from zoo.commands import launch
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  # srun: drops its own options and runs the task (one task here); scontrol: records its arguments.
  program(str(bin_dir), 'srun', 'args = [a for a in sys.argv[1:] if not a.startswith("--kill")]\n'
                                'os.execv(args[0], args)')
  program(str(bin_dir), 'scontrol', 'open(os.environ["RUN_LOG"], "a").write("scontrol " + " ".join(sys.argv[1:]) '
                                    '+ "\\n")')
  train = program(str(bin_dir), 'zoo-train', TRAIN)
  args = launch.parse_args(['slurm', f'--workdir={tmp_path}/run', *TRAIN_ARGS])
  script = tmp_path / 'job.sbatch'
  script.write_text(launch.sbatch_script(args, train, 'out'))
  log = tmp_path / 'run.log'
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', RUN_LOG=str(log), RUN_SECONDS=str(seconds),
             SLURM_JOB_ID='77')
  shell = subprocess.Popen(['bash', str(script)], env=env)
  if terminate:
    deadline = time.time() + 30
    while not (log.exists() and 'started' in log.read_text()) and time.time() < deadline:
      time.sleep(0.05)
    shell.send_signal(signal.SIGTERM)
  return shell.wait(timeout=60), log.read_text().splitlines()


def test_the_time_limit_signal_checkpoints_and_requeues(tmp_path):
  rc, lines = run_script(tmp_path, 60, terminate=True)
  assert rc == 0
  assert lines == [f'started --workdir={tmp_path}/run --config=configs/resnet_rs.py:50-160 '
                   '--config.data_dir=/data/tfds dir', 'checkpointed', 'scontrol requeue 77']


def test_a_run_that_finishes_ends_the_job(tmp_path):
  rc, lines = run_script(tmp_path, 0.1, terminate=False)
  assert rc == 0 and lines[1:] == ['finished']
