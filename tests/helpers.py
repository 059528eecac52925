"""Shared pieces of the tests: small configs that train in seconds."""
import contextlib
import functools
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from zoo.cli import apply_overrides  # noqa: F401  (re-exported for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CountingSource:
  """A random-access source (an array, a list, a TFDS data source) that records the index of each record read, in
  `read` (a list the caller may pass, to share it between sources)."""

  def __init__(self, examples, read: list | None = None):
    self.examples, self.read = examples, [] if read is None else read

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    self.read.append(int(index))
    return self.examples[index]


def tiny_config(data_dir, **overrides):
  """The quickstart config shrunk further: a few steps of a 1-1-1-1 ResNet-RS on mnist5k."""
  from configs import quickstart
  c = quickstart.get_config()
  c.data_dir = data_dir
  c.batch_size = 32
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.model_kwargs.width_multiplier = 0.125
  return apply_overrides(c, overrides)


def init_variables(model, seed: int, *inputs, **kwargs):
  """`model.init` compiled as one function, as the trainer compiles it (trainer.RUN_ONCE): run eagerly, it compiles
  each of its operations apart (26 s for the quickstart's ResNet-RS on the first call of a test process)."""
  from zoo import trainer
  init = jax.jit(functools.partial(model.init, **kwargs)).lower(jax.random.key(seed), *inputs)
  return init.compile(compiler_options=trainer.RUN_ONCE)(jax.random.key(seed), *inputs)


def console_script(name: str) -> str:
  """The path of console script `name` (pyproject.toml) of the environment running the tests: next to its
  interpreter, where `pip install -e .` (the Makefile) puts it."""
  path = os.path.join(os.path.dirname(sys.executable), name)
  assert os.path.isfile(path), f'{name} is not installed next to {sys.executable}: pip install --no-deps -e .'
  return path


@contextlib.contextmanager
def optimized():
  """Compiles with XLA's optimisations on inside (tests/conftest.py turns most of them off), in this process and in
  the commands started from it. Executables compiled under the other setting are dropped before and after."""
  before, variable = jax.config.read('jax_disable_most_optimizations'), os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS']
  jax.clear_caches()
  jax.config.update('jax_disable_most_optimizations', False)
  os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '0'
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', before)
    os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = variable
    jax.clear_caches()


def xla_flags(devices: int) -> str:
  """The tests' XLA_FLAGS (tests/conftest.py: the fast CPU flags and the older fusion emitter, quicker to compile)
  with `devices` host devices."""
  count = '--xla_force_host_platform_device_count'
  return ' '.join([f for f in os.environ.get('XLA_FLAGS', '').split() if not f.startswith(count)]
                  + [f'{count}={devices}'])


def run_cli(script, *args, devices=None, timeout=600, env=None):
  """Runs a command of the repo in a subprocess from the repository root: a console script ('zoo-train'), a root
  script ('train.py') or anything else Python runs ('-m zoo.convert', '-c CODE'). `devices`: the tests' XLA_FLAGS with
  that many host devices (xla_flags); `env` replaces the environment. Returns (returncode, stdout, stderr)."""
  env = dict(os.environ if env is None else env)
  if devices is not None:
    env['XLA_FLAGS'] = xla_flags(devices)
  command = [console_script(script)] if script.startswith('zoo-') else [sys.executable, *script.split()]
  proc = subprocess.run(command + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr


BLOCK_TENSORFLOW = """import importlib.machinery, sys
class _NoTensorFlow(importlib.machinery.PathFinder):
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    return None if name.partition('.')[0] == 'tensorflow' else super().find_spec(name, path, target)
sys.meta_path = [_NoTensorFlow if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def without_tensorflow(module: str) -> tuple[str, str]:
  """run_cli's (script, code) that runs `python -m module ARGS` as if TensorFlow were not installed: the import
  system finds no `tensorflow` (what libraries that probe for it, as TFDS does, see too), so the command passes only
  if nothing it runs needs TensorFlow."""
  return '-c', (BLOCK_TENSORFLOW + f"import runpy; sys.argv[0] = {module!r}; "
                f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")


def one_script_each(scripts, cases):
  """pytest parameters (script, *case) that give each case to one of `scripts` in turn. The scripts are entry points
  of one `main` (a console script and the root script or module that wraps it), so each meets some of the cases
  rather than all of them, and every entry point is still run."""
  return [(scripts[i % len(scripts)], *case) for i, case in enumerate(cases)]


def load_state(workdir, step=None) -> dict:
  """The whole state saved at `step` (the latest when None) in `workdir`: read once and compare its parts, as one
  restore costs about half a second whatever the model's size."""
  from zoo import checkpoint
  with checkpoint.manager(workdir, read_only=True) as mngr:
    return checkpoint.restore_state(mngr, step if step is not None else mngr.latest_step())


def logged_scalars(workdir, tag) -> dict:
  """{step: value} of scalar `tag` in the TensorBoard events of `workdir`, read back as TensorBoard reads them."""
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  events = event_accumulator.EventAccumulator(str(workdir), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  if tag not in events.Tags()[event_accumulator.TENSORS]:
    return {}
  return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def max_abs_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# train.py as child processes, for the fault and multi-host tests: 16 steps of the quickstart model shrunk, a
# checkpoint every 2, on 4 CPU devices split over `processes` processes (joined on 127.0.0.1).
STEPS = 16
STATE_KEYS = ('params', 'batch_stats', 'ema_params', 'opt_state')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_training(tfds_dir, workdir, logs, processes=1):
  """Starts one train.py per log in `logs` (`processes` of them, 4 devices in all), with the commands' default
  console (TF_CPP_MIN_LOG_LEVEL unset); stderr is appended to the logs. Returns the Popen objects."""
  assert len(logs) == processes
  env = dict(os.environ, XLA_FLAGS=xla_flags(4 // processes))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  command = [sys.executable, 'train.py', '--config=configs/quickstart.py', f'--workdir={workdir}',
             f'--config.data_dir={tfds_dir}', '--config.batch_size=32', f'--config.num_train_steps={STEPS}',
             '--config.log_every_steps=1', '--config.eval_every_steps=1000', '--config.checkpoint_every_steps=2',
             '--config.keep_checkpoints=3', '--config.model_kwargs.width_multiplier=0.125',
             '--config.eval_split=test[:64]']
  if processes > 1:
    command += [f'--coordinator_address=127.0.0.1:{free_port()}', f'--num_processes={processes}']
  return [subprocess.Popen(command + ([f'--process_id={i}'] if processes > 1 else []), cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=open(log, 'a')) for i, log in enumerate(logs)]


def wait_all(procs, logs, timeout=600):
  """Waits for every process (killing what is left after `timeout` s); returns (exit code, whole log) of each."""
  t = time.time()
  try:
    for proc in procs:
      proc.wait(timeout=max(timeout - (time.time() - t), 1))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return [(proc.returncode, open(log).read()) for proc, log in zip(procs, logs)]


def steps_logged(log) -> int:
  return len([line for line in open(log) if f'/{STEPS}  ' in line])


def final_state(workdir) -> dict:
  state = load_state(workdir, STEPS)
  return {k: state[k] for k in STATE_KEYS}
