"""Total-variation MRI reconstruction by PDHG (Chambolle & Pock 2011): the classical baseline of the unrolled
primal-dual networks (zoo/models/pdnet.py), whose `relaxation='pdhg'` runs these very steps with learned scalars.

Problem: min_x 1/2 |A x - y|^2 + lam TV(x), A = mask * F (zoo/inverse/mri.py), x complex [..., H, W], TV isotropic
with forward differences (zero at the last row / column, Neumann boundary). Both terms go into the dual, K = [A; grad]
and G = 0, so every update is closed-form and only applies A, A*, grad and its adjoint -div: exactly the operator
calls that Learned Primal-Dual hands to its networks.

Step sizes: PDHG converges when sigma tau |K|^2 <= 1. |A| = 1 (0/1 mask, orthonormal F), |grad|^2 <= 8 (each
difference operator has norm <= 2), so |K|^2 = |A*A + grad* grad| <= 1 + 8 = 9; we take sigma = tau = 1/3.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from zoo.inverse import mri
from zoo.metrics import psnr

OPERATOR_NORM = 3.0  # bound on |[A; grad]|
STEP = 1.0 / OPERATOR_NORM


def gradient(x):
  """Forward differences over the last two axes: [..., H, W] -> [..., H, W, 2] (rows, columns)."""
  rows = jnp.pad(jnp.diff(x, axis=-2), [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 0)])
  cols = jnp.pad(jnp.diff(x, axis=-1), [(0, 0)] * (x.ndim - 1) + [(0, 1)])
  return jnp.stack([rows, cols], axis=-1)


def divergence(p):
  """-gradient^T: [..., H, W, 2] -> [..., H, W]. The last row (column) of p's row (column) part is ignored, as the
  gradient never fills it, so that <gradient(x), p> = <x, -divergence(p)> for every p."""
  rows, cols = p[..., :-1, :, 0], p[..., :, :-1, 1]
  lead = [(0, 0)] * (rows.ndim - 2)
  div_rows = jnp.pad(rows, lead + [(0, 1), (0, 0)]) - jnp.pad(rows, lead + [(1, 0), (0, 0)])
  div_cols = jnp.pad(cols, lead + [(0, 0), (0, 1)]) - jnp.pad(cols, lead + [(0, 0), (1, 0)])
  return div_rows + div_cols


def squared_pixel_norm(p):
  """|p|^2 per pixel over the difference directions (and real/imaginary parts)."""
  return jnp.sum(jnp.square(jnp.real(p)) + jnp.square(jnp.imag(p)), axis=-1)


def total_variation(x):
  """Isotropic TV per image: the sum over pixels of |gradient(x)|."""
  return jnp.sum(jnp.sqrt(squared_pixel_norm(gradient(x))), axis=(-2, -1))


def objective(x, y, mask, lam):
  """1/2 |A x - y|^2 + lam TV(x) per image."""
  data = 0.5 * jnp.sum(jnp.square(jnp.abs(mri.forward(x, mask) - y)), axis=(-2, -1))
  return data + lam * total_variation(x)


class State(NamedTuple):
  x: jax.Array  # primal iterate, complex [..., H, W]
  x_bar: jax.Array  # over-relaxed primal, where K is evaluated
  q: jax.Array  # dual of the data term, k-space [..., H, W]
  p: jax.Array  # dual of TV, [..., H, W, 2]


def initial_state(y, mask) -> State:
  """Primal at the zero-filled image A* y (already consistent with the data: A A* y = y), duals at zero."""
  x = mri.adjoint(y, mask)
  return State(x, x, jnp.zeros_like(y, jnp.complex64), jnp.zeros(x.shape + (2,), jnp.complex64))


def pdhg_step(state: State, y, mask, *, lam, sigma=STEP, tau=STEP, theta=1.0) -> State:
  """One Chambolle-Pock iteration. The duals take the proximal steps of the conjugates: for 1/2 |u - y|^2 it is
  (q + sigma (u - y)) / (1 + sigma), for lam |.|_{2,1} the projection onto pixel norms <= lam. G = 0, so the primal
  step is a plain step along -K* (q, p).

  The projection compares squared norms: a square root at a flat pixel (p = 0) would make the gradients that
  unrolled networks take through this step NaN."""
  q = (state.q + sigma * (mri.forward(state.x_bar, mask) - y)) / (1.0 + sigma)
  p = state.p + sigma * gradient(state.x_bar)
  p = p * jax.lax.rsqrt(jnp.maximum(1.0, squared_pixel_norm(p) / jnp.square(lam)))[..., None]
  x = state.x - tau * (mri.adjoint(q, mask) - divergence(p))
  return State(x, x + theta * (x - state.x), q, p)


@functools.partial(jax.jit, static_argnames=('iterations',))
def pdhg_tv(y, mask, *, lam, iterations: int = 200, x_true=None):
  """TV-regularised reconstruction from k-space samples y (complex [..., H, W], zero off the mask).

  Returns (x, history): x complex [..., H, W] (compare |x| with a magnitude image), history per iteration holding
  `residual` = |x_{k+1} - x_k|_2 (as zoo.inverse.pnp), `objective` and, given x_true, `psnr` of |x| (peak 1).
  """
  y = jnp.asarray(y, jnp.complex64)

  def step(state, _):
    new = pdhg_step(state, y, mask, lam=lam)
    record = {'residual': jnp.linalg.norm(new.x - state.x, axis=(-2, -1)),
              'objective': objective(new.x, y, mask, lam)}
    if x_true is not None:
      record['psnr'] = psnr(jnp.abs(new.x), x_true, peak=1.0, axes=(-2, -1))
    return new, record

  state, history = jax.lax.scan(step, initial_state(y, mask), length=iterations)
  return state.x, history
