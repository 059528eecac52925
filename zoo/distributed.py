"""Joining the processes of a multi-host run: `jax.distributed.initialize` from flags or the cluster's environment.

Every process runs the same command. One process per host is the usual layout (one GPU node each), but nothing
here assumes it: the test runs two processes of two CPU devices each on 127.0.0.1. On a TPU slice of several hosts
`zoo-launch tpu` sets ZOO_TPU_HOSTS, and jax finds the slice's other hosts itself (from the VM's metadata); joining
them through jax.distributed also gives the preemption sync service that zoo/faults.py asks on SIGTERM.
"""
import os

from absl import logging

from zoo.errors import UserError

# Launchers whose environment jax.distributed.initialize() reads by itself: the variable that holds the process count.
LAUNCHERS = {'SLURM (srun)': 'SLURM_NTASKS', 'Open MPI (mpirun)': 'OMPI_COMM_WORLD_SIZE',
             'Cloud TPU (zoo-launch tpu)': 'ZOO_TPU_HOSTS'}


def _launcher() -> str | None:
  """The launcher of a multi-process job this process belongs to, if any."""
  return next((name for name, var in LAUNCHERS.items() if int(os.environ.get(var, '1')) > 1), None)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Calls `jax.distributed.initialize` for a multi-process run: one started by hand gives all three arguments
  (zoo-train's flags of those names), one under a detected launcher none. A single process leaves it alone. On CPU
  the cross-process collectives go through gloo (XLA:CPU has no other)."""
  by_hand = [coordinator_address, num_processes, process_id]
  launcher = _launcher()
  if all(v is None for v in by_hand) and launcher is None:
    return
  if any(v is None for v in by_hand) and launcher is None:
    raise UserError('a multi-process run started by hand needs all of --coordinator_address, --num_processes and '
                    '--process_id')
  import jax
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (ValueError, RuntimeError) as e:  # a bad address, id or count; a coordinator that never answered
    raise UserError(f'could not join the multi-process run ({launcher or "flags"}): {str(e).splitlines()[0]}') from e
  logging.info('process %d of %d (%s); %d local of %d devices', jax.process_index(), jax.process_count(),
               launcher or 'flags', jax.local_device_count(), jax.device_count())
