"""Shared pieces of the tests: small configs that train in seconds."""
import os
import subprocess
import sys

import jax
import numpy as np

from zoo.cli import apply_overrides  # noqa: F401  (re-exported for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, **overrides):
  """The quickstart config shrunk further: a few steps of a 1-1-1-1 ResNet-RS on mnist5k."""
  sys.path.insert(0, ROOT)
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


def run_cli(script, *args, devices=None, timeout=600):
  """Runs a CLI of the repo in a subprocess; returns (returncode, stdout, stderr)."""
  env = dict(os.environ)
  if devices is not None:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  proc = subprocess.run([sys.executable, *script.split(), *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr


def load_params(workdir, step=None, key='params'):
  from zoo import checkpoint
  with checkpoint.manager(workdir, read_only=True) as mngr:
    return checkpoint.restore_state(mngr, step if step is not None else mngr.latest_step())[key]


def max_abs_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))
