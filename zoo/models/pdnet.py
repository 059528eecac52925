"""PD-Net (Cheng et al. 2019): MRI reconstruction by an unrolled primal-dual algorithm whose updates are learned.

The paper releases no code; the network follows Learned Primal-Dual (Adler & Oktem 2018), which unrolls
Chambolle-Pock for A = mask * F (zoo/inverse/mri.py). Complex images and k-space travel as 2 real channels (real,
imaginary); a memory of N channels holds N complex numbers per pixel, i.e. 2N real channels.

The paper's "gradually relaxing the constraints" runs from the fixed PDHG updates to fully learned ones; both ends are
here, trained by the same trainer:
- relaxation='pdhg': classical Chambolle-Pock for min_x 1/2 |A x - y|^2 + lambda TV(x) (zoo/inverse/tv.py), every
  update the closed-form one, and only the scalars sigma_k, tau_k, lambda_k of each iteration learned. It is the
  fixed-update end because nothing but the algorithm's own parameters is learned: at its initial values it *is*
  `tv.pdhg_tv` stopped after `iterations` steps. (LPD's "Learned PDHG" baseline already learns a CNN for the primal
  update, one step into the relaxation.)
- relaxation='learned': LPD. Each iteration d <- d + Gamma_k([d, A p_1, y]), p <- p + Lambda_k([p, A* d_0]) with
  separate CNNs per iteration; the output is |p_0|. Which channels meet the operator is LPD's (its h^(2) and the
  updated dual's h^(1), 1-based): p_1 can learn the over-relaxed x_bar while p_0 stays the estimate, as the PDHG
  updates of the other end need x and x_bar.

Both start from the zero-filled image A* y (every primal memory channel; duals at zero) rather than LPD's zero
primal: with few iterations a PDHG started at zero spends them building up the data dual before the image moves
(x_1 = tau sigma / (1 + sigma) A* y), while A* y already fits the data exactly (A A* y = y), and the untrained
learned net then returns it unchanged (see `LearnedUpdate`).
"""
import math

import flax.linen as nn
import jax.numpy as jnp

from zoo.errors import UserError
from zoo.inverse import mri, tv
from zoo.models import layers
from zoo.registry import ModelCard, register_model

RELAXATIONS = ('learned', 'pdhg')
# The TV weight that reconstructs a 64x64 Shepp-Logan phantom from 4x Cartesian samples best among 0.003 / 0.01 /
# 0.02 after 200 to 2000 PDHG iterations (images in [0, 1]); the pdhg relaxation learns it from there.
INITIAL_TV_WEIGHT = 0.01


class PReLU(nn.Module):
  """max(x, 0) + alpha min(x, 0), one alpha per channel, starting as a ReLU (alpha = 0)."""

  @nn.compact
  def __call__(self, x):
    alpha = self.param('alpha', nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return jnp.maximum(x, 0) + alpha.astype(x.dtype) * jnp.minimum(x, 0)


class LearnedUpdate(nn.Module):
  """Gamma_k (dual) or Lambda_k (primal): the increment of a memory from the memory and what the operator made of
  the other variable; 3x3 conv - PReLU - 3x3 conv - PReLU - 3x3 conv to the memory channels.

  The last convolution starts at zero, so the untrained net makes identity updates and returns its initial primal,
  the zero-filled image: training starts from a sensible reconstruction, and the ten stacked residual updates
  cannot amplify one another at initialisation.
  """
  out_channels: int
  features: int
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    dtype = layers.as_dtype(self.dtype)
    h = x.astype(dtype)
    for i in range(2):
      h = nn.Conv(self.features, (3, 3), padding='SAME', dtype=dtype, name=f'conv{i}')(h)
      h = PReLU(name=f'prelu{i}')(h)
    h = nn.Conv(self.out_channels, (3, 3), padding='SAME', dtype=dtype, kernel_init=nn.initializers.zeros,
                name='conv2')(h)
    return h.astype(jnp.float32)


class LearnedPrimalDual(nn.Module):
  """relaxation='learned': complex y, mask [B, H, W] -> complex p_0 [B, H, W]."""
  iterations: int
  primal_channels: int
  dual_channels: int
  features: int
  dtype: str

  @nn.compact
  def __call__(self, y, mask):
    data = mri.to_channels(y)
    primal = jnp.tile(mri.to_channels(mri.adjoint(y, mask)), self.primal_channels)
    dual = jnp.zeros(y.shape + (2 * self.dual_channels,), jnp.float32)
    for k in range(self.iterations):
      measured = mri.to_channels(mri.forward(mri.from_channels(primal[..., 2:4]), mask))
      dual += LearnedUpdate(2 * self.dual_channels, self.features, self.dtype, name=f'dual{k}')(
          jnp.concatenate([dual, measured, data], axis=-1))
      back = mri.to_channels(mri.adjoint(mri.from_channels(dual[..., 0:2]), mask))
      primal += LearnedUpdate(2 * self.primal_channels, self.features, self.dtype, name=f'primal{k}')(
          jnp.concatenate([primal, back], axis=-1))
    return mri.from_channels(primal[..., 0:2])


class LearnedStepPDHG(nn.Module):
  """relaxation='pdhg': `iterations` TV-PDHG steps with learned sigma_k, tau_k, lambda_k.

  They are learned as logarithms: they stay positive, and Adam's steps become relative changes, which suits
  scalars of different magnitudes (lambda ~ 0.01, sigma = tau = 1/3 at the start, the classical steps with
  sigma tau |K|^2 = 1). Training may leave that convergence region: only `iterations` steps are ever taken.
  """
  iterations: int

  @nn.compact
  def __call__(self, y, mask):
    def log_param(name, value):
      return self.param(name, nn.initializers.constant(math.log(value)), (self.iterations,), jnp.float32)

    log_sigma, log_tau = log_param('log_sigma', tv.STEP), log_param('log_tau', tv.STEP)
    log_lam = log_param('log_lam', INITIAL_TV_WEIGHT)
    state = tv.initial_state(y, mask)
    for k in range(self.iterations):
      state = tv.pdhg_step(state, y, mask, lam=jnp.exp(log_lam[k]), sigma=jnp.exp(log_sigma[k]),
                           tau=jnp.exp(log_tau[k]))
    return state.x


class PDNet(nn.Module):
  """`model.apply(variables, kspace, mask, train=False)`: kspace float32 [B, H, W, 2] (measured, already masked
  k-space as real/imaginary channels, orthonormal FFT, unshifted layout), mask float32 [B, H, W] (0/1) -> the
  magnitude image |p_0| [B, H, W, 1] float32, any H, W. `train` is accepted for the trainer; nothing depends on it.

  primal_channels, dual_channels (complex memory channels), features and dtype (of the convolutions) shape the
  learned relaxation only; the operator and the pdhg relaxation run in float32 / complex64.
  """
  iterations: int = 10
  primal_channels: int = 5
  dual_channels: int = 5
  features: int = 32
  relaxation: str = 'learned'
  dtype: str = 'float32'

  def check_config(self):
    if self.relaxation not in RELAXATIONS:
      raise UserError(f'relaxation must be one of {RELAXATIONS}, got {self.relaxation!r}')
    if self.iterations < 1:
      raise UserError(f'iterations must be at least 1, got {self.iterations}')
    if self.relaxation == 'learned' and (self.primal_channels < 2 or self.dual_channels < 1 or self.features < 1):
      raise UserError('the learned relaxation needs primal_channels >= 2 (p_0 is the estimate, p_1 meets the '
                      f'operator), dual_channels >= 1 and features >= 1; got {self.primal_channels}, '
                      f'{self.dual_channels} and {self.features}')

  @nn.compact
  def primal(self, kspace, mask):
    """The complex estimate p_0 [B, H, W] whose magnitude `__call__` returns."""
    self.check_config()
    y = mri.from_channels(kspace.astype(jnp.float32))
    mask = mask.astype(jnp.float32)
    if self.relaxation == 'pdhg':
      return LearnedStepPDHG(self.iterations, name='pdhg')(y, mask)
    return LearnedPrimalDual(self.iterations, self.primal_channels, self.dual_channels, self.features, self.dtype,
                             name='learned')(y, mask)

  def __call__(self, kspace, mask, train: bool = False):
    return jnp.abs(self.primal(kspace, mask))[..., None]


# Reconstructs 128x128 images from k-space and its mask (configs/pdnet.py); any size works.
register_model('pdnet', PDNet, ModelCard('pdnet', 'reconstruction', 128, 'configs/pdnet.py:cartesian-4'))
