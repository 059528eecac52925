"""Trained denoisers as plain functions for the plug-and-play solvers and the Lipschitz certificate."""
import jax
import jax.numpy as jnp

import zoo
from zoo import checkpoint
from zoo.models.spectral_norm import VECTORS


def load(workdir: str, step: int | None = None, power_iterations: int = 0):
  """(model, variables, config dict) of the checkpoint at `step` (default: latest; EMA weights when it has them) of a
  denoising workdir, its spectral-norm vectors first advanced by `power_iterations` on the final weights (see
  `converge_power_iteration`)."""
  config, variables = checkpoint.load_variables(
      workdir, 'denoising', step, 'python train.py --config=configs/denoiser.py:simplecnn-real-15 --workdir=DIR')
  model = zoo.create_model(config['model'], **config['model_kwargs'])
  if power_iterations:
    variables = converge_power_iteration(model, variables, config['input']['patch_size'], power_iterations)
  return model, variables, config


def converge_power_iteration(model, variables, patch_size: int, iterations: int):
  """`variables` with the spectral-norm vectors u, v after `iterations` more power iterations on the fixed weights.

  Training runs one iteration per step on weights that keep moving, and the top singular values of a convolution on
  a 40x40 image lie close together, so the trained sigma of each layer is an underestimate (by 1-5% after 800
  steps here) and the layer slightly exceeds its target. Iterating on the final weights removes that; the weights
  and BatchNorm statistics stay as trained. A network without such vectors is returned as it is.
  """
  if not any(path[-1].key in VECTORS for path, _ in
             jax.tree_util.tree_leaves_with_path(variables.get('batch_stats', {}))):
    return variables
  probe = jnp.zeros((1, patch_size, patch_size, 1))

  @jax.jit
  def run(variables):  # the weights an argument, not constants of the program
    def step(stats, _):
      _, updates = model.apply({**variables, 'batch_stats': stats}, probe, train=True, mutable=['batch_stats'])
      keep = lambda path, old, new: new if path[-1].key in VECTORS else old  # noqa: E731
      return jax.tree_util.tree_map_with_path(keep, stats, updates['batch_stats']), None
    return jax.lax.scan(step, variables['batch_stats'], None, length=iterations)[0]
  return {**variables, 'batch_stats': jax.device_get(run(variables))}


def as_function(model, variables):
  """image [H, W] (or [N, H, W, C]) -> denoised image of the same shape, in evaluation mode."""
  def denoise(x):
    batched = x.reshape((1,) + x.shape + (1,)) if x.ndim == 2 else x
    return model.apply(variables, batched, train=False).reshape(x.shape)
  return denoise


def noise_sigma(config: dict) -> float:
  """The noise level (in [0, 1] units) the denoiser was trained for; the evaluation level of a blind one."""
  noise = config['noise']
  return (noise['sigma'] or noise['eval_sigma']) / 255.0

