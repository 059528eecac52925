"""Launches a training job on a cluster in one command: `zoo-launch slurm [OPTIONS] -- TRAIN_ARGS`, or on a Cloud
TPU VM: `zoo-launch tpu create|run|status|logs|stop|delete` (zoo/commands/launch_tpu.py).

`zoo-launch slurm --nodes=2 --gpus_per_node=8 --workdir=/shared/runs/rs50 -- --config=configs/resnet_rs.py:50-160`
writes an sbatch script into the workdir (`WORKDIR/slurm/job-N.sbatch`, a new N each time: nothing is overwritten)
and submits it with `sbatch`. The script starts the same `zoo-train --workdir=WORKDIR TRAIN_ARGS` once per node (or
once per GPU with `--tasks=gpu`) through `srun`, whose environment (SLURM_NTASKS, SLURM_PROCID, ...) zoo-train reads
to join the processes (zoo/distributed.py). The job survives its end:
- `--requeue`: when SLURM preempts the job it requeues it, and the same command resumes from the workdir's newest
  checkpoint;
- `--signal=B:TERM@GRACE`: GRACE seconds before the time limit SLURM sends SIGTERM to the batch script, which
  forwards it to the training processes (they checkpoint and stop, zoo/faults.py), waits for them, and requeues the
  job (`scontrol requeue`) so that it continues in a new allocation. A run that ends by itself ends the job.
The job's output goes to WORKDIR/slurm/job-N-%j.out (appended across requeues). `--dry_run` prints the script and the
sbatch command instead of submitting. The workdir must be on a filesystem every node sees.
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys

from zoo.commands import launch_tpu
from zoo.errors import UserError

TASKS = ('node', 'gpu')


def parse_args(argv):
  p = argparse.ArgumentParser(prog='zoo-launch', description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest='backend', required=True)
  s = sub.add_parser('slurm', help='write and submit an sbatch script (see zoo/commands/launch.py)')
  s.add_argument('--workdir', required=True, help='the run\'s workdir, on a filesystem every node sees')
  s.add_argument('--nodes', type=int, default=1)
  s.add_argument('--gpus_per_node', type=int, default=0, help='GPUs to allocate per node (0: none)')
  s.add_argument('--tasks', choices=TASKS, default='node', help='one process per node (default) or per GPU')
  s.add_argument('--job_name', default='zoo')
  s.add_argument('--partition')
  s.add_argument('--account')
  s.add_argument('--time', help='time limit, as sbatch takes it (e.g. 24:00:00)')
  s.add_argument('--grace', type=int, default=180, help='seconds before the time limit at which the run is told to '
                 'checkpoint and the job requeued')
  s.add_argument('--sbatch_arg', action='append', default=[],
                 help='another #SBATCH option, e.g. --sbatch_arg=--qos=high')
  s.add_argument('--train', default=None, help='the zoo-train program the nodes run (default: the one installed '
                 'beside this Python)')
  s.add_argument('--dry_run', action='store_true', help='print the script and the command; submit nothing')
  launch_tpu.add_parser(sub)
  split = argv.index('--') if '--' in argv else len(argv)
  args = p.parse_args(argv[:split])
  args.train_args = argv[split + 1:]
  if not args.train_args and (args.backend == 'slurm' or args.action == 'run'):
    command = 'slurm --workdir=DIR' if args.backend == 'slurm' else 'tpu run --name=N --zone=Z --workdir=gs://B/R'
    raise UserError(f'give the training arguments after --: zoo-launch {command} ... -- --config=...')
  return args


def check(args) -> None:
  if args.nodes < 1 or args.gpus_per_node < 0 or args.grace < 1:
    raise UserError(f'--nodes must be >= 1, --gpus_per_node >= 0 and --grace >= 1; got {args.nodes}, '
                    f'{args.gpus_per_node}, {args.grace}')
  if args.tasks == 'gpu' and args.gpus_per_node < 1:
    raise UserError('--tasks=gpu starts one process per GPU: give --gpus_per_node')
  launch_tpu.check_train_args(args.train_args)


def sbatch_script(args, train: str, output: str) -> str:
  """The sbatch script of `args` (module docstring); `train` is the zoo-train program, `output` the log pattern."""
  per_node = args.gpus_per_node if args.tasks == 'gpu' else 1
  options = [f'--job-name={args.job_name}', f'--nodes={args.nodes}', f'--ntasks-per-node={per_node}',
             '--requeue', '--open-mode=append', f'--output={output}', f'--signal=B:TERM@{args.grace}']
  if args.gpus_per_node:
    options.append(f'--gpus-per-node={args.gpus_per_node}')
  options += [f'--{key}={value}' for key in ('partition', 'account', 'time')
              if (value := getattr(args, key)) is not None]
  options += args.sbatch_arg
  command = shlex.join([train, f'--workdir={os.path.abspath(args.workdir)}', *args.train_args])
  return '\n'.join(['#!/bin/bash', *(f'#SBATCH {o}' for o in options), '',
                    '# One zoo-train per task; they join through the srun environment (zoo/distributed.py).',
                    f'srun --kill-on-bad-exit=1 {command} &',
                    'train=$!',
                    '# At the time limit (--signal) the run checkpoints and stops; the job then continues in a new',
                    '# allocation. On preemption SLURM requeues the job itself (--requeue).',
                    'trap \'kill -TERM "$train"; wait "$train"; scontrol requeue "$SLURM_JOB_ID"; exit 0\' TERM',
                    'wait "$train"', '']) + '\n'


def next_script_path(workdir: str) -> tuple[str, str]:
  """(WORKDIR/slurm/job-N.sbatch with N one past the highest there, its output pattern job-N-%j.out)."""
  folder = os.path.join(os.path.abspath(workdir), 'slurm')
  taken = [int(f[4:-7]) for f in os.listdir(folder) if f.startswith('job-') and f.endswith('.sbatch')
           and f[4:-7].isdigit()] if os.path.isdir(folder) else []
  n = max(taken, default=0) + 1
  return os.path.join(folder, f'job-{n}.sbatch'), os.path.join(folder, f'job-{n}-%j.out')


def launch_slurm(args) -> None:
  check(args)
  sbatch = shutil.which('sbatch')
  if sbatch is None and not args.dry_run:
    raise UserError('sbatch not found on PATH: run zoo-launch slurm on a login node of the cluster, where SLURM\'s '
                    'client commands are installed')
  train = args.train or os.path.join(os.path.dirname(sys.executable), 'zoo-train')
  path, output = next_script_path(args.workdir)
  script = sbatch_script(args, train, output)
  if args.dry_run:
    print(script)
    print(shlex.join(['sbatch', path]))
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'x') as f:  # 'x': never over a script that exists
    f.write(script)
  result = subprocess.run([sbatch, path], capture_output=True, text=True)
  if result.returncode != 0:
    raise UserError(f'sbatch refused {path}: {(result.stderr or result.stdout).strip().splitlines()[-1]}')
  print(f'{result.stdout.strip()} ({path}; output {output})')


def main(argv=None):
  try:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.backend == 'tpu':
      sys.exit(launch_tpu.main(args))
    launch_slurm(args)
  except UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  main()
