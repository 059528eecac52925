"""Plug-and-play ADMM and FBS (Ryu et al. 2019): a denoiser D in place of the prox of the regulariser.

Each run is one compiled call: a jax.lax.scan inside jax.jit, with the denoiser (any jittable real [H, W] ->
[H, W] function) and the iteration count static. The denoiser is part of the compiled program, so build it once and
reuse it: a new function object compiles again. Both return (estimate, history), history holding per iteration
`residual` = |x_{k+1} - x_k|_2 (the fixed-point residual of the returned iterate) and, given x_true, `psnr` (peak
PSNR, peak 1).

The reference code's denoisers see their input stretched to [0, 1] at every call (`rescaled` does that): with
sigma the denoiser's training noise level in 0..255 units,
- CS-MRI ADMM and FBS: rescaled(D, scale=1 + sigma / 510);
- Poisson ADMM: rescaled(D); Poisson FBS: rescaled(D, scale=1 + 20 / 510) (20 fixed, whatever sigma);
- single-photon ADMM: rescaled(D, scale=0.4, floor=0.0).
"""
import functools

import jax
import jax.numpy as jnp

from zoo.metrics import psnr


def rescaled(denoiser, scale: float = 1.0, floor=None):
  """D wrapped so that it sees its input mapped affinely onto [0, 1] and then shrunk by `scale` about 0.5, and its
  output mapped back: the iterates leave the range the denoiser was trained on, and a noisy image of that range
  spans a little more than [0, 1] (hence scale = 1 + O(sigma)). The range is [min, max] of the input, or
  [floor, max] when `floor` is given."""
  shift = (1.0 - scale) / 2.0

  def wrapped(x):
    lo = jnp.min(x) if floor is None else floor
    span = jnp.maximum(jnp.max(x) - lo, 1e-12)
    out = denoiser((x - lo) / span * scale + shift)
    return (out - shift) / scale * span + lo
  return wrapped


def pnp_admm(denoiser, data_term, x0, *, alpha, iterations: int, x_true=None, prox_first: bool = False):
  """PnP-ADMM, in the paper's form: x_{k+1} = D(y_k - u_k); y_{k+1} = prox_{alpha f}(x_{k+1} + u_k);
  u_{k+1} = u_k + x_{k+1} - y_{k+1}. Run from x = x0, u = 0 starting with the prox step, as the reference's CS-MRI
  and Poisson scripts do (written there as Douglas-Rachford: v = prox(x + u), x = D(2v - x - u), u += x_old - v),
  so `iterations` here equal theirs step for step; returns the last x = D(...).

  prox_first=True swaps the roles of D and the prox, as the reference's single-photon script does:
  x = prox(v - u); v = D(x + u); u += x - v from v = x0, u = 0, returning the last x = prox(...).
  """
  return _admm(denoiser, iterations, prox_first, data_term, x0, alpha, x_true)


def pnp_fbs(denoiser, data_term, x0, *, step, iterations: int, x_true=None):
  """PnP-FBS: x_{k+1} = D(P(x_k - step * grad f(x_k))), P = data_term.project (identity for CS-MRI, x >= 0 for
  Poisson, as the reference clamps); returns the last x."""
  return _fbs(denoiser, iterations, data_term, x0, step, x_true)


def _history(x_new, x, x_true):
  record = {'residual': jnp.linalg.norm((x_new - x).ravel())}
  if x_true is not None:
    record['psnr'] = psnr(x_new, x_true, peak=1.0, axes=(-2, -1))
  return record


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _admm(denoiser, iterations, prox_first, data_term, x0, alpha, x_true):
  x0 = jnp.asarray(x0, jnp.float32)

  def paper_step(carry, _):
    x, u = carry
    y = data_term.prox(x + u, alpha)
    u = u + x - y
    x_new = denoiser(y - u)
    return (x_new, u), _history(x_new, x, x_true)

  def prox_first_step(carry, _):
    x, v, u = carry
    x_new = data_term.prox(v - u, alpha)
    v = denoiser(x_new + u)
    u = u + x_new - v
    return (x_new, v, u), _history(x_new, x, x_true)

  zeros = jnp.zeros_like(x0)
  if prox_first:
    (x, _, _), history = jax.lax.scan(prox_first_step, (x0, x0, zeros), length=iterations)
  else:
    (x, _), history = jax.lax.scan(paper_step, (x0, zeros), length=iterations)
  return x, history


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fbs(denoiser, iterations, data_term, x0, step, x_true):
  def fbs_step(x, _):
    x_new = denoiser(data_term.project(x - step * data_term.grad(x)))
    return x_new, _history(x_new, x, x_true)

  return jax.lax.scan(fbs_step, jnp.asarray(x0, jnp.float32), length=iterations)
