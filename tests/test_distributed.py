"""Joining a multi-process run (zoo/distributed.py): SLURM's and Open MPI's environments, as srun and mpirun set
them, or the arguments of a run started by hand. jax.distributed.initialize, the call that would join other processes,
is replaced by one that records its arguments (or fails as an unreachable coordinator does); the two-process run
itself is tests/test_multihost.py."""
import jax
import pytest

from zoo import distributed
from zoo.errors import UserError


@pytest.fixture
def joins(monkeypatch):
  """The calls of jax.distributed.initialize, recorded instead of made, in an environment of no launcher; jax's
  config is restored after."""
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *args: calls.append(args))
  for var in distributed.LAUNCHERS.values():
    monkeypatch.delenv(var, raising=False)
  collectives = jax.config.jax_cpu_collectives_implementation
  yield calls
  jax.config.update('jax_cpu_collectives_implementation', collectives)


def test_a_single_process_joins_nothing(joins, monkeypatch):
  distributed.initialize()
  monkeypatch.setenv('SLURM_NTASKS', '1')  # a one-task job
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '1')
  distributed.initialize()
  assert joins == []


@pytest.mark.parametrize('var,launcher', [('SLURM_NTASKS', 'SLURM (srun)'),
                                          ('OMPI_COMM_WORLD_SIZE', 'Open MPI (mpirun)'),
                                          ('ZOO_TPU_HOSTS', 'Cloud TPU (zoo-launch tpu)')])
def test_a_launchers_environment_joins_the_run(joins, monkeypatch, caplog, var, launcher):
  """jax reads the coordinator, the count and the id from the launcher's environment itself: no argument given."""
  caplog.set_level('INFO', logger='absl')
  monkeypatch.setenv(var, '4')
  distributed.initialize()
  assert joins == [(None, None, None)]
  assert f'process 0 of 1 ({launcher})' in caplog.text
  assert jax.config.jax_cpu_collectives_implementation == 'gloo'


def test_a_run_started_by_hand_joins_with_all_three_arguments(joins):
  """zoo-train passes its --coordinator_address, --num_processes and --process_id (tests/test_errors.py: one of them
  alone is one error line)."""
  with pytest.raises(UserError, match=r'^a multi-process run started by hand needs all of --coordinator_address, '
                                      r'--num_processes and --process_id$'):
    distributed.initialize('10.0.0.1:1234', 2)
  assert joins == []
  distributed.initialize('10.0.0.1:1234', 2, 1)
  assert joins == [('10.0.0.1:1234', 2, 1)]


def test_a_coordinator_that_never_answers_ends_in_one_line(joins, monkeypatch):
  def unreachable(*args):
    raise RuntimeError('DEADLINE_EXCEEDED: Barrier timed out. Id: PjRT_Client_Connect\nAdditional GRPC error...')
  monkeypatch.setattr(jax.distributed, 'initialize', unreachable)
  monkeypatch.setenv('SLURM_NTASKS', '2')
  with pytest.raises(UserError, match=r'^could not join the multi-process run \(SLURM \(srun\)\): DEADLINE_EXCEEDED: '
                                      r'Barrier timed out. Id: PjRT_Client_Connect$'):
    distributed.initialize()
