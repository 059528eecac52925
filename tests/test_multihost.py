"""Multi-host training (issue 9): two train.py processes of two CPU devices each, joined on 127.0.0.1 with gloo
collectives, train the parameters that one process of four devices trains on the same global batches. One of them
is sent SIGTERM mid-run: both stop at the same step, the checkpoint is written once, and both restore it."""
import os
import re
import signal
import time

import jax
import numpy as np
import pytest

from tests.helpers import (STATE_KEYS, STEPS, final_state, load_state, max_abs_diff, start_training, steps_logged,
                           wait_all)


@pytest.mark.slow
def test_two_hosts_train_what_one_host_trains_and_survive_sigterm_on_one_of_them(tfds_dir, straight_run, tmp_path):
  workdir, logs = tmp_path / 'w', [tmp_path / 'p0.log', tmp_path / 'p1.log']
  procs = start_training(tfds_dir, workdir, logs, processes=2)
  t = time.time()
  while steps_logged(logs[0]) < 3:
    assert all(p.poll() is None for p in procs) and time.time() - t < 300, open(logs[1]).read()[-3000:]
    time.sleep(0.01)
  procs[1].send_signal(signal.SIGTERM)  # one host only: jax's sync service stops both at one step
  stopped = set()
  for code, log in wait_all(procs, logs):
    assert code == 0, log[-3000:]
    stopped.update(re.findall(r'SIGTERM \(on one of the hosts\) received: stopped after step (\d+)', log))
  [stopped] = stopped  # the same step on both
  ckpt = workdir / 'checkpoints'
  assert 3 <= int(stopped) == max(int(n) for n in os.listdir(ckpt) if n.isdigit()) < STEPS
  # Written once: process 0 writes the replicated state, all of it, and process 1 nothing.
  state_dir = ckpt / stopped / 'state'
  assert [p.name for p in state_dir.glob('*process_*')] == ['ocdbt.process_0'], os.listdir(state_dir)
  assert list((state_dir / 'ocdbt.process_0' / 'd').iterdir())  # its data files
  saved, one = load_state(workdir, int(stopped)), final_state(straight_run)
  assert int(saved['step']) == int(stopped)
  for k in STATE_KEYS:
    assert jax.tree.map(np.shape, saved[k]) == jax.tree.map(np.shape, one[k]), k
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(saved[k])), k

  logs = [tmp_path / 'p0.resumed.log', tmp_path / 'p1.resumed.log']
  for code, log in wait_all(start_training(tfds_dir, workdir, logs, processes=2), logs):
    assert code == 0 and f'Resuming from checkpoint step {stopped}' in log, log[-3000:]
  # Not bit for bit: gloo sums the four devices' gradients in another order than XLA:CPU's in-process all-reduce.
  two = final_state(workdir)
  for k in STATE_KEYS:
    assert max_abs_diff(one[k], two[k]) < 1e-5, k
