"""One CS-MRI case of the plug-and-play paper, reconstructed the paper's way with a given denoiser:

  python -m zoo.inverse.csmri --weights=FILE_OR_WORKDIR --data_dir=DIR --image=Brain --mask=random \
      [--solver=admm|fbs] [--iterations=100] [--sigma=15] [--alpha=...]

FILE is a denoiser released with the paper (`*_noise15.pth`, zoo.convert.pnp_denoisers), WORKDIR a denoiser trained
by the zoo (configs/denoiser.py). DIR holds the paper's data (Demo_mat/CS_MRI/, zoo/inverse/paper_data.py). The run
ends with one JSON line: `psnr` (peak 1, of the last iterate clipped to [0, 1]), `snr_paper` (what the paper's
scripts print as "PSNR", below), `zero_filled_psnr`, and per iteration `psnr_history` (peak 1, unclipped), `residual`
|x_k - x_{k-1}| and `residual_ratio` residual_k / residual_{k-1} (below 1: the iterates contract).

The paper's scripts (pnp_admm_csmri.py, pnp_fbs_csmri.py of uclaopt/Provable_Plug_and_Play), matched here:
- Measurement: y = fft2(x) * mask + 3 * noises (numpy's unnormalised FFT; noises.mat, complex) - noise at every
  frequency, so the zero-filled image ifft2(y) carries noise where nothing was sampled too; only the sampled entries
  of y enter the iterations. The zoo's orthonormal FFT holds the same numbers divided by sqrt(H W).
- ADMM (alpha 2 by default): x = |ifft2(y)|, v = x, u = 0; each iteration v = prox(x + u) with the data weighted by
  1 / (2 alpha) on the sampled entries (the prox of 2 alpha f in the zoo's convention: `pnp.pnp_admm` with alpha 4),
  then x = D(2 v - x - u), u = u + x_old - v; the result is the last x.
- FBS (alpha 0.4 by default, the step): x = ifft2(y), complex; each iteration x = |x - alpha ifft2(mask (fft2 x -
  y))| (the modulus, not the real part), then x = D(x). The result is the iterate *before* the last denoising (the
  script returns `xout`, the iterate after the gradient step).
- The denoiser sees its input stretched to [0, 1] (min and max of the iterate), shrunk by 1 + sigma / 510 about 0.5,
  and the output mapped back (`pnp.rescaled`), sigma being the denoiser's training noise (15 by default).
Unusual in the paper's code, and not copied: its `psnr(x, x_true)` is 10 log10(|x_true|^2 / |x - x_true|^2), an SNR
against the image's energy (reported here as `snr_paper`), of the iterate unclipped; the zoo's `psnr` is the peak-1
PSNR of the clipped image. Its FBS script defaults to sigma 5 and a "RealSN_DnCNN" model type; the ADMM one to 15.
"""
import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from zoo import cli
from zoo.errors import UserError
from zoo.inverse import mri
from zoo.metrics import psnr

SOLVERS = {'admm': 2.0, 'fbs': 0.4}  # the scripts' alpha: ADMM's data weight 1 / (2 alpha), FBS's step


def measurement(image, mask, kspace_noise):
  """(k-space y: mask * F x + noise at every frequency, the zero-filled image ifft2(y), complex), in the orthonormal
  convention; `kspace_noise` is paper_data.load_csmri's (3 * noises / sqrt(H W))."""
  y = mri.fft2c(jnp.asarray(image, jnp.float32)) * jnp.asarray(mask, jnp.float32) + jnp.asarray(kspace_noise)
  return y, mri.ifft2c(y)


def reconstruct(denoiser, image, mask, kspace_noise, solver: str = 'admm', alpha: float | None = None,
                iterations: int = 100) -> dict:
  """The paper's PnP-`solver` on one case with `denoiser` ([H, W] -> [H, W], already `pnp.rescaled`); `alpha` in the
  paper's convention (default SOLVERS). Returns the last iterate 'x' and the module docstring's metrics."""
  from zoo.inverse import data_terms, pnp
  if solver not in SOLVERS:
    raise UserError(f'solver must be one of {sorted(SOLVERS)}, got {solver!r}')
  alpha = SOLVERS[solver] if alpha is None else alpha
  y, zero_filled = measurement(image, mask, kspace_noise)
  x_true = jnp.asarray(image, jnp.float32)
  if solver == 'admm':
    term = data_terms.CSMRI(mask=jnp.asarray(mask, jnp.float32), y=y)
    x, history = pnp.pnp_admm(denoiser, term, jnp.abs(zero_filled), alpha=2.0 * alpha, iterations=iterations,
                              x_true=x_true)
  else:
    x, history = _fbs(denoiser, iterations, jnp.asarray(mask, jnp.float32), y, zero_filled, alpha, x_true)
  residual = np.asarray(history['residual'], np.float64)
  x = np.asarray(x, np.float64)
  return {'x': x, 'psnr': float(psnr(np.clip(x, 0.0, 1.0), image, axes=(-2, -1))), 'snr_paper': _snr(x, image),
          'zero_filled_psnr': float(psnr(jnp.clip(jnp.abs(zero_filled), 0.0, 1.0), image, axes=(-2, -1))),
          'psnr_history': np.asarray(history['psnr'], np.float64).tolist(), 'residual': residual.tolist(),
          'residual_ratio': _ratios(residual)}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fbs(denoiser, iterations, mask, y, x0, step, x_true):
  """The paper's FBS; history per iteration of the reported iterate (after the gradient step)."""
  def body(carry, _):
    x, before = carry
    after = jnp.abs(x - step * mri.ifft2c(mask * (mri.fft2c(x) - y)))
    record = {'residual': jnp.linalg.norm((after - before).ravel()), 'psnr': psnr(after, x_true, axes=(-2, -1))}
    return (denoiser(after).astype(x.dtype), after), record

  (_, last), history = jax.lax.scan(body, (x0.astype(jnp.complex64), jnp.abs(x0)), length=iterations)
  return last, history


def _ratios(residual) -> list:
  """residual_k / residual_{k-1}; None where the previous residual is rounding noise (FBS's first step leaves the
  zero-filled image, already consistent with the samples, unchanged)."""
  floor = 1e-6 * float(np.max(residual))
  return [float(r / p) if p > floor else None for p, r in zip(residual[:-1], residual[1:])]


def _snr(x, reference) -> float:
  return float(10 * np.log10(np.sum(np.square(reference, dtype=np.float64)) / np.sum((x - reference) ** 2)))


def load_denoiser(weights: str, sigma: float):
  """(denoiser [H, W] -> [H, W] in evaluation mode, description) of a released file or a zoo workdir trained at
  `sigma` (0..255 units); another noise level, or a checkpoint of another task, is one UserError line."""
  from zoo.convert import pnp_denoisers
  from zoo.inverse import trained
  if os.path.isdir(weights):
    model, variables, config = trained.load(weights)
    trained_at = trained.noise_sigma(config) * 255
    description = f'{config["model"]} {config["model_kwargs"]} trained in {weights}'
  elif os.path.isfile(weights):
    model, variables, description = pnp_denoisers.load(weights)
    level = re.search(r'noise(\d+)', os.path.basename(weights))
    trained_at = float(level[1]) if level else sigma
  else:
    raise UserError(f'--weights={weights}: no such file or workdir (a released *_noiseN.pth or a zoo denoiser workdir)')
  if abs(trained_at - sigma) > 1e-6:
    raise UserError(f'{weights} holds a denoiser trained at sigma {trained_at:g}, not --sigma={sigma:g}: pass '
                    '--sigma to match it, or a denoiser of that noise level')
  return trained.as_function(model, variables), description


def define_flags():
  """The CLI's flags, defined only when it runs: the module is also a library (projects/pnp uses it)."""
  flags.DEFINE_string('weights', None, 'A released denoiser (*_noiseN.pth) or a zoo denoiser workdir.')
  flags.DEFINE_string('data_dir', os.environ.get('ZOO_PNP_DATA'), 'The paper\'s data (default $ZOO_PNP_DATA).')
  flags.DEFINE_enum('image', 'Brain', ['Brain', 'Bust'], 'Ground truth.')
  flags.DEFINE_enum('mask', 'random', ['random', 'radial', 'cartesian'], 'The paper\'s 30% sampling mask.')
  flags.DEFINE_enum('solver', 'admm', sorted(SOLVERS), 'PnP-ADMM or PnP-FBS.')
  flags.DEFINE_integer('iterations', 100, 'Iterations.')
  flags.DEFINE_float('sigma', 15, 'The denoiser\'s training noise level (0..255): it sets the input scaling.')
  flags.DEFINE_float('alpha', None, 'In the paper\'s convention; default 2 (ADMM) or 0.4 (FBS).')


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  from zoo.inverse import paper_data, pnp
  f = flags.FLAGS
  if not f.weights or not f.data_dir:
    raise UserError('give --weights=FILE_OR_WORKDIR and --data_dir=DIR (or set ZOO_PNP_DATA=DIR)')
  if f.iterations < 1:
    raise UserError(f'--iterations must be at least 1, got {f.iterations}')
  data = paper_data.load_csmri(f.data_dir)  # a missing file is one line naming it, before anything compiles
  denoise, description = load_denoiser(f.weights, f.sigma)
  result = reconstruct(pnp.rescaled(denoise, scale=1 + f.sigma / 510), data['images'][f.image],
                       data['masks'][f.mask], data['kspace_noise'], f.solver, f.alpha, f.iterations)
  del result['x']
  print(json.dumps({'image': f.image, 'mask': f.mask, 'solver': f.solver, 'sigma': f.sigma,
                    'alpha': SOLVERS[f.solver] if f.alpha is None else f.alpha, 'iterations': f.iterations,
                    'weights': f.weights, 'denoiser': description, **result}))


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)
