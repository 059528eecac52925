"""Trained denoisers as plain functions for the plug-and-play solvers and the Lipschitz certificate."""
import os

import jax

import zoo
from zoo import checkpoint
from zoo.errors import UserError


def load(workdir: str, step: int | None = None, use_ema: bool = True):
  """(model, variables, config dict) of the checkpoint at `step` (default: latest) of a denoising workdir."""
  if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
    raise UserError(f'no checkpoints in {workdir}: train a denoiser there first '
                    '(python train.py --config=configs/denoiser.py:simplecnn-real-15 --workdir=DIR)')
  with checkpoint.manager(workdir, read_only=True) as mngr:
    step = mngr.latest_step() if step is None else step
    config = checkpoint.restore_config(mngr, step)
    state = checkpoint.restore_state(mngr, step)
  if config.get('task') != 'denoising':
    raise UserError(f'{workdir} holds a {config.get("task")} checkpoint of {config.get("model")}, not a denoiser')
  prefix = 'ema_' if use_ema and 'ema_params' in state else ''
  variables = {'params': state[prefix + 'params'], 'batch_stats': state.get(prefix + 'batch_stats', {})}
  model = zoo.create_model(config['model'], **config['model_kwargs'])
  return model, jax.device_get(variables), config


def as_function(model, variables):
  """image [H, W] (or [N, H, W, C]) -> denoised image of the same shape, in evaluation mode."""
  def denoise(x):
    batched = x.reshape((1,) + x.shape + (1,)) if x.ndim == 2 else x
    return model.apply(variables, batched, train=False).reshape(x.shape)
  return denoise


def residual_function(model, variables):
  """The residual network N = I - D on one image [H, W]."""
  def residual(x):
    return model.apply(variables, x[None, :, :, None], train=False, method=model.residual)[0, :, :, 0]
  return residual


def noise_sigma(config: dict) -> float:
  """The noise level (in [0, 1] units) the denoiser was trained for; the evaluation level of a blind one."""
  noise = config['noise']
  return (noise['sigma'] or noise['eval_sigma']) / 255.0

