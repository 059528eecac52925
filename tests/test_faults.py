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

from tests.helpers import (ROOT, STATE_KEYS, STEPS, final_state, load_state, max_abs_diff, start_training,
                           steps_logged, tiny_config, wait_all, xla_flags)
from zoo import faults, trainer
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


@pytest.mark.slow
def test_sigkill_mid_save_sigterm_and_sigkill_at_a_random_moment_end_in_the_same_bits(tfds_dir, straight_run,
                                                                                      tmp_path):
  """One run of train.py, started again and again with the same command: killed while orbax writes a checkpoint
  (tried up to three times, until the kill leaves the step's temporary directory behind), so the next start resumes
  from the complete checkpoint before it; sent SIGTERM two steps after resuming, so it checkpoints the step it was
  on and exits 0; killed at a random moment (drawn from ZOO_KILL_SEED, printed, to replay it); then left to finish.
  The final state equals an uninterrupted run's bit for bit."""
  log, workdir = tmp_path / 'log', tmp_path / 'w'
  ckpt = workdir / 'checkpoints'

  def saving():
    """The newest complete step, when a later one is being written (its temporary directory exists), else None."""
    names = os.listdir(ckpt) if ckpt.exists() else []
    complete = max((int(n) for n in names if n.isdigit()), default=None)
    writing = [int(n.split('.')[0]) for n in names if '.orbax-checkpoint-tmp' in n]
    return complete if complete is not None and any(s > complete for s in writing) else None

  for starts in range(1, 4):
    proc = start(tfds_dir, workdir, log)
    wait_for(lambda: saving() is not None, proc, poll=0.001)
    proc.kill()
    proc.wait()
    complete = saving()
    if complete is not None:  # killed mid-save
      break
  assert complete is not None, f'the save ended before each of {starts} kills'

  resumed_from = len(open(log).read())
  proc, logged = start(tfds_dir, workdir, log), steps_logged(log)
  wait_for(lambda: steps_logged(log) >= logged + 2, proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0
  text = open(log).read()[resumed_from:]
  assert f'Resuming from checkpoint step {complete}\n' in text, text[-3000:]  # not from the unfinished step
  assert 'SIGTERM received: stopped after step' in text, text[-3000:]
  stopped = int(text.split('stopped after step ')[1].split()[0])
  assert stopped < STEPS and stopped in [int(d) for d in os.listdir(ckpt) if d.isdigit()]  # odd steps too

  seed = int(os.environ.get('ZOO_KILL_SEED', random.SystemRandom().randrange(2**32)))
  print(f'the moment of the random kill: ZOO_KILL_SEED={seed}')  # pytest shows it with a failure
  proc = start(tfds_dir, workdir, log)
  wait_for(lambda: f'Resuming from checkpoint step {stopped}' in open(log).read(), proc)
  time.sleep(random.Random(seed).uniform(0.0, 3.0))
  proc.kill()
  proc.wait()
  run_to_end(tfds_dir, workdir, log)  # from a step of the third start, or its final one
  assert open(log).read().count('Resuming from checkpoint') == starts - 1 + 3
  straight, resumed = final_state(straight_run), final_state(workdir)
  for k in STATE_KEYS:
    assert max_abs_diff(straight[k], resumed[k]) == 0.0, k


@pytest.mark.slow
def test_a_non_finite_step_leaves_the_state_unchanged(tfds_dir):
  """A batch with a NaN pixel: the step is rejected on every device, only the step counter moves."""
  c = tiny_config(tfds_dir, batch_size=8)
  task = ClassificationTask(c, num_classes=10)
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


# A constant learning rate of 1e30 (one compiled step whatever num_train_steps is): the first step, from the initial
# weights, is finite, and its update makes every later step overflow (seen: steps 2, 3, 4, ... rejected).
DIVERGING = {'learning_rate': 1e30, 'schedule': 'step', 'lr_step_boundaries': (), 'max_nonfinite_steps': 3,
             'checkpoint_every_steps': 1, 'keep_checkpoints': 20}


@pytest.mark.slow
@pytest.mark.parametrize('late', [False, True])
def test_non_finite_steps_in_a_row_stop_the_run_with_the_last_good_state_saved(tfds_dir, tmp_path, caplog, late):
  """Read late (`late_verdict`, the default on accelerators), the third rejected step in a row stops the run one step
  later, with that step's state saved: it is still the state before the streak."""
  c = tiny_config(tfds_dir, num_train_steps=20, late_verdict=late, **DIVERGING)
  workdir = str(tmp_path / 'w')
  with pytest.raises(UserError, match=r'3 steps in a row \(steps \d+-\d+\) had a non-finite loss') as e:
    trainer.train_and_evaluate(c, workdir)
  first, last = map(int, str(e.value).split('(steps ')[1].split(')')[0].split('-'))
  assert last == first + 2 and f'step {first} rejected' in caplog.text and f'step {last} rejected' in caplog.text
  saved = int(str(e.value).split('is checkpoint ')[1].split()[0])
  assert saved == last + late and os.path.isdir(f'{workdir}/checkpoints/{saved}')
  assert max(int(n) for n in os.listdir(f'{workdir}/checkpoints')) == saved  # no step ran after it
  # The saved state is the one before the streak: every rejected step left it as it was.
  assert first >= 2  # the first step, from the initial weights, has finite gradients
  last_saved, before = load_state(workdir, saved), load_state(workdir, first - 1)
  for key in STATE_KEYS:
    assert max_abs_diff(last_saved[key], before[key]) == 0.0, key
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(last_saved['params']))


@pytest.mark.slow
@pytest.mark.parametrize('late', [False, True])
def test_a_streak_that_reaches_the_limit_at_the_last_step_fails_the_run(tfds_dir, tmp_path, late):
  """Steps 2-4 rejected and 4 the last: read late, step 4's verdict comes after the loop, and it stops the run as the
  verdict read at once does."""
  workdir = str(tmp_path / 'w')
  with pytest.raises(UserError, match=r'^training stopped: 3 steps in a row \(steps 2-4\) had a non-finite loss or '
                                      rf'gradients, .* The last good state is checkpoint 4 in {workdir}\. '):
    trainer.train_and_evaluate(tiny_config(tfds_dir, num_train_steps=4, late_verdict=late, **DIVERGING), workdir)
  last_saved, before = load_state(workdir, 4), load_state(workdir, 1)
  for key in STATE_KEYS:
    assert max_abs_diff(last_saved[key], before[key]) == 0.0, key


@pytest.mark.parametrize('late', [False, True])
def test_verdicts_are_read_at_once_or_one_step_late(late):
  """Two rejected steps in a row stop the run: seen at the step that completes the streak, or read late, one step
  after it, and by `finish` when it completes at the last step."""
  rejected = faults.NonFiniteSteps(2, late=late)
  stops = [rejected.add(step, jnp.asarray(finite)) for step, finite in enumerate([True, False, True, False], 1)]
  assert stops == [False] * 4 and rejected.total == (1 if late else 2)
  assert rejected.add(5, jnp.asarray(False)) is not late  # steps 4-5
  assert rejected.finish() is late and rejected.streak == [4, 5] and rejected.total == 3


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


@pytest.mark.slow
def test_out_of_memory_names_the_batch_the_model_and_what_to_change(tfds_dir, tmp_path):
  """A real allocation failure: the tiny model's training step at batch 512 of 320x320 images asks XLA:CPU for
  10,057,158,248 bytes (measured: the number its error names), beyond the 4 GiB left under the limit. train.py ends
  with one line that names the model and the batch and says what to change."""
  env = dict(os.environ, XLA_FLAGS=xla_flags(1), MALLOC_ARENA_MAX='2')
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


# XLA's words for a failed device allocation elsewhere than on CPU: the GPU allocator refusing a buffer, a GPU
# program's buffers not fitting, TPU's compiler finding the program larger than the HBM (numbers made up).
ACCELERATOR_OUT_OF_MEMORY = [
    'RESOURCE_EXHAUSTED: Failed to allocate request for 3.00GiB (3221225472B) on device ordinal 0',
    'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 5368709120 bytes.\nBufferAssignment OOM Debugging.',
    'RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 20.00G of 15.48G '
    'hbm. Exceeded hbm capacity by 4.52G.\n\nTotal hbm usage >= 20.52G:',
]


@pytest.mark.parametrize('xla', ACCELERATOR_OUT_OF_MEMORY)
def test_out_of_memory_on_an_accelerator_is_explained_in_one_line(xla):
  """RESOURCE_EXHAUSTED becomes OutOfMemory with XLA's first line; a model already in bfloat16 with remat on is told
  only of the batch."""
  error = jax.errors.JaxRuntimeError(xla)
  with pytest.raises(faults.OutOfMemory) as e:
    with faults.out_of_memory_explained('volo_d1', 64, {'dtype': 'bfloat16', 'remat': True}, 224):
      raise error
  assert str(e.value) == (f'out of memory on the cpu devices: volo_d1 at batch_size=64 (8 per device, 224x224 '
                          f'images) does not fit (XLA: {xla.splitlines()[0].rstrip(".")}). Try a smaller batch_size')
  assert e.value.__cause__ is error


def test_other_runtime_errors_pass_unchanged():
  error = jax.errors.JaxRuntimeError('INVALID_ARGUMENT: Executable expected parameter 0 of size 8 but got 16')
  with pytest.raises(jax.errors.JaxRuntimeError) as e:
    with faults.out_of_memory_explained('volo_d1', 64, {'dtype': 'float32', 'remat': False}):
      raise error
  assert e.value is error
