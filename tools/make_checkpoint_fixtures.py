"""Writes tests/fixtures/checkpoints/: small checkpoints as the trainer writes them, and what they compute.

  python -m tools.make_checkpoint_fixtures

Run once at commit 8379ca8 (the train state with `ema_params` / `ema_batch_stats` always present), so that
tests/test_checkpoint_fixtures.py proves that checkpoints of that layout still evaluate and resume. Two runs of
3 steps on 8 host devices (the tests' device count), a checkpoint after each step:
  * `classification_ema`: the quickstart's ResNet-RS (1-1-1-1, widths x0.125) on mnist5k, EMA decay 0.99;
  * `denoiser_realsn`: simplecnn with RealSN (8 features, 16x16 patches), EMA decay 0 (its power-iteration vectors
    live in 'batch_stats').
Each fixture keeps the step-2 checkpoint; `expected.npz` beside it holds a fixed input and the model's outputs on
it with the raw and the EMA weights of steps 2 and 3, and `expected.json` the eval metrics of step 2 (EMA weights).
"""
import os

if __name__ == '__main__':  # the tests' device count, before jax is imported (the tests import the configs below)
  os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8'])

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from configs import denoiser, quickstart  # noqa: E402
from zoo import checkpoint, evaluation, trainer  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'fixtures', 'checkpoints')
STEPS, KEPT = 3, 2


def schedule(c, steps: int = STEPS) -> ml_collections.ConfigDict:
  c.num_train_steps = steps
  c.log_every_steps = 1
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1
  c.keep_checkpoints = steps
  return c


def classification_config(data_dir: str) -> ml_collections.ConfigDict:
  c = quickstart.get_config()
  c.data_dir = data_dir
  c.batch_size = 16
  c.eval_split = 'test[:64]'
  c.model_kwargs.width_multiplier = 0.125
  c.model_kwargs.num_classes = 10  # the task takes it from the dataset; the fixtures' outputs need it too
  return schedule(c)


def denoiser_config() -> ml_collections.ConfigDict:
  c = denoiser.get_config('simplecnn-real-25')
  c.model_kwargs.features = 8
  c.input.patch_size = 16
  c.input.patch_stride = 24
  c.input.eval_image_size = 32
  c.batch_size = 16
  return schedule(c)


def outputs(config, state: dict, inputs: np.ndarray, prefix: str) -> np.ndarray:
  """The model's eval output on `inputs` with the state's weights `prefix`params / `prefix`batch_stats."""
  model = zoo.create_model(config.model, **config.model_kwargs)
  variables = {'params': state[prefix + 'params'], 'batch_stats': state[prefix + 'batch_stats']}
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs))


def make(name: str, config, input_shape: tuple[int, ...], tmp: str) -> None:
  workdir = os.path.join(tmp, name)
  trainer.train_and_evaluate(config, workdir)
  inputs = np.random.default_rng(0).random(input_shape, np.float32)
  expected = {'inputs': inputs}
  with checkpoint.manager(workdir, read_only=True) as mngr:
    for step in (KEPT, STEPS):
      state = checkpoint.restore_state(mngr, step)
      for kind, prefix in (('raw', ''), ('ema', 'ema_')):
        expected[f'{kind}_{step}'] = outputs(config, state, inputs, prefix)
  metrics = evaluation.evaluate_checkpoint(config, workdir, step=KEPT)
  out = os.path.join(OUT, name)
  shutil.rmtree(out, ignore_errors=True)
  shutil.copytree(os.path.join(checkpoint.checkpoint_dir(workdir), str(KEPT)),
                  os.path.join(checkpoint.checkpoint_dir(out), str(KEPT)))
  np.savez(os.path.join(out, 'expected.npz'), **expected)
  with open(os.path.join(out, 'expected.json'), 'w') as f:
    json.dump({'step': KEPT, 'eval': metrics}, f, indent=1, sort_keys=True)
  print(f'wrote {out}: eval {metrics}')


def main():
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, 'tfds')  # the training prepares mnist5k there (zoo/data/sources.py)
    make('classification_ema', classification_config(data_dir), (2, 28, 28, 1), tmp)
    make('denoiser_realsn', denoiser_config(), (2, 16, 16, 1), tmp)


if __name__ == '__main__':
  main()
