"""Training survives what schedulers and arithmetic do to it (issue 9): SIGTERM, SIGKILL mid-save, non-finite
steps. The kill test runs train.py as a real child process and compares the final bits with an uninterrupted run of
the same command. Damaged checkpoints: tests/test_trainer.py's resume test."""
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import (ROOT, STATE_KEYS, STEPS, final_state, load_params, max_abs_diff, start_training,
                           steps_logged, tiny_config, wait_all)
from zoo import trainer
from zoo.errors import UserError
from zoo.parallel import DataParallel
from zoo.tasks.classification import ClassificationTask

def start(tfds_dir, workdir, log):
  return start_training(tfds_dir, workdir, [log])[0]


def run_to_end(tfds_dir, workdir, log):
  [(code, text)] = wait_all([start(tfds_dir, workdir, log)], [log])
  assert code == 0, text[-3000:]


def wait_for(predicate, proc, timeout=300, poll=0.01):
  t = time.time()
  while not predicate():
    assert proc.poll() is None, 'training ended before the moment to interrupt it'
    assert time.time() - t < timeout
    time.sleep(poll)


def test_sigkill_mid_save_sigterm_and_sigkill_at_a_random_moment_end_in_the_same_bits(tfds_dir, straight_run,
                                                                                      tmp_path):
  """One run of train.py, started four times with the same command: killed while orbax writes a checkpoint (its
  temporary directory exists, a complete checkpoint beside it); sent SIGTERM two steps after resuming, so it
  checkpoints the step it was on and exits 0; killed at a random moment; then left to finish. The final state equals
  an uninterrupted run's bit for bit."""
  log, workdir = tmp_path / 'log', tmp_path / 'w'
  ckpt = workdir / 'checkpoints'

  def saving_after_a_complete_one():
    names = os.listdir(ckpt) if ckpt.exists() else []
    return any(n.isdigit() for n in names) and any('orbax-checkpoint-tmp' in n for n in names)

  proc = start(tfds_dir, workdir, log)
  wait_for(saving_after_a_complete_one, proc, poll=0.001)
  proc.kill()
  proc.wait()

  proc, logged = start(tfds_dir, workdir, log), steps_logged(log)
  wait_for(lambda: steps_logged(log) >= logged + 2, proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0
  text = open(log).read()
  assert 'SIGTERM received: stopped after step' in text, text[-3000:]
  stopped = int(text.split('stopped after step ')[1].split()[0])
  assert stopped < STEPS and stopped in [int(d) for d in os.listdir(ckpt) if d.isdigit()]  # odd steps too

  proc = start(tfds_dir, workdir, log)
  wait_for(lambda: f'Resuming from checkpoint step {stopped}' in open(log).read(), proc)
  time.sleep(random.Random(os.getpid()).uniform(0.0, 3.0))
  proc.kill()
  proc.wait()
  run_to_end(tfds_dir, workdir, log)  # from a step of the third start, or its final one
  assert open(log).read().count('Resuming from checkpoint') == 3
  straight, resumed = final_state(straight_run), final_state(workdir)
  for k in STATE_KEYS:
    assert max_abs_diff(straight[k], resumed[k]) == 0.0, k




def test_a_non_finite_step_leaves_the_state_unchanged(tfds_dir):
  """A batch with a NaN pixel: the step is rejected on every device, only the step counter moves."""
  c = tiny_config(tfds_dir, batch_size=8)
  task = ClassificationTask.without_data(c, num_classes=10)
  tx = trainer.optimizer(c, trainer.learning_rate_schedule(c, 100, 1000), task.weight_decay_mask)
  dp = DataParallel('pmap')
  step = dp.compile(lambda s, b, r: trainer.train_step(s, b, r, task=task, tx=tx, decay=0.9), 1, 1)
  state = trainer.initial_state(task, tx, jax.random.key(0))
  images = np.random.default_rng(0).standard_normal((8, 28, 28, 1)).astype(np.float32)
  labels = np.arange(8, dtype=np.int32)
  good, _, finite = step(dp.put_state(state), dp.put_batch({'image': images, 'label': labels}), jax.random.key(1))
  assert bool(np.all(jax.device_get(finite)))
  images[5, 3, 3, 0] = np.nan
  after, _, finite = step(good, dp.put_batch({'image': images, 'label': labels}), jax.random.key(1))
  assert not np.any(jax.device_get(finite))
  before, after = dp.get_state(good), dp.get_state(after)
  assert int(after.step) == int(before.step) + 1 == 2
  assert max_abs_diff(jax.tree.leaves(before.replace(step=jnp.zeros(()))),
                      jax.tree.leaves(after.replace(step=jnp.zeros(())))) == 0.0


def test_non_finite_steps_in_a_row_stop_the_run_with_the_last_good_state_saved(tfds_dir, tmp_path, caplog):
  """A learning rate of 1e30 makes the loss overflow within a few steps, and every step after that too."""
  c = tiny_config(tfds_dir, learning_rate=1e30, max_nonfinite_steps=3, num_train_steps=20, checkpoint_every_steps=1,
                  keep_checkpoints=20)
  workdir = str(tmp_path / 'w')
  with pytest.raises(UserError, match=r'3 steps in a row \(steps \d+-\d+\) had a non-finite loss') as e:
    trainer.train_and_evaluate(c, workdir)
  first, last = map(int, str(e.value).split('(steps ')[1].split(')')[0].split('-'))
  assert last == first + 2 and f'step {first} rejected' in caplog.text and f'step {last} rejected' in caplog.text
  saved = int(str(e.value).split('is checkpoint ')[1].split()[0])
  assert saved == last and os.path.isdir(f'{workdir}/checkpoints/{saved}')
  # The saved state is the one before the streak: every rejected step left it as it was.
  assert first >= 2  # the first step, from the initial weights, has finite gradients
  for key in STATE_KEYS:
    assert max_abs_diff(load_params(workdir, saved, key), load_params(workdir, first - 1, key)) == 0.0, key
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(load_params(workdir, saved)))


# train.py under an address-space limit a few GiB above what its imports take: an allocation beyond it fails in any
# Linux kernel, whatever its overcommit policy, as a device allocation fails on a GPU.
LIMITED_TRAIN_PY = """
import resource, runpy, sys
import zoo.trainer  # jax, tensorflow and the zoo are mapped before the limit is set
mapped = next(int(line.split()[1]) * 1024 for line in open('/proc/self/status') if line.startswith('VmSize'))
resource.setrlimit(resource.RLIMIT_AS, (mapped + (4 << 30), mapped + (4 << 30)))
sys.argv = ['train.py'] + sys.argv[1:]
runpy.run_path('train.py', run_name='__main__')
"""


def test_out_of_memory_names_the_batch_the_model_and_what_to_change(tfds_dir, tmp_path):
  """A real allocation failure: the tiny model's training step at batch 512 of 320x320 images asks XLA:CPU for
  10,057,158,248 bytes (measured: the number its error names), beyond the 4 GiB left under the limit. train.py ends
  with one line that names the model and the batch and says what to change."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1', MALLOC_ARENA_MAX='2')
  proc = subprocess.run(
      [sys.executable, '-c', LIMITED_TRAIN_PY, '--config=configs/quickstart.py', f'--workdir={tmp_path}',
       f'--config.data_dir={tfds_dir}', '--config.batch_size=512', '--config.input.image_size=320',
       '--config.num_train_steps=2', '--config.model_kwargs.width_multiplier=0.125'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1 and last.startswith('error: out of memory on the cpu devices: resnetrs50 at '
                                                  'batch_size=512 (512 per device, 320x320 images) does not fit '
                                                  '(XLA: '), proc.stderr[-3000:]
  assert 'Out of memory allocating' in last and 'Traceback' not in proc.stderr
  assert last.endswith('Try a smaller batch_size, or bfloat16 compute (model_kwargs.dtype=bfloat16), or recomputing '
                       "each block's activations in the backward pass (model_kwargs.remat=True)"), last
