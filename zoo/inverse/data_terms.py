"""Data-fidelity terms f of the plug-and-play experiments (Ryu et al. 2019), for real images [H, W].

Each term holds its measurement and exposes what the solvers use: `prox(z, alpha)` = argmin_x f(x) + |x - z|^2 /
(2 alpha); for the smooth ones `grad(x)` and `project(x)` (onto the domain of f, applied after a gradient step);
`initial()`, the reference code's starting point; and a `simulate` classmethod that makes a measurement.

Parameters against the reference code (uclaopt/Provable_Plug_and_Play):
- CS-MRI: its prox (pnp_admm_csmri.py) weighs the data by 1 / (2 alpha), i.e. it is the prox of 2f: its alpha = 2
  is our alpha = 4. Its gradient step (pnp_fbs_csmri.py) uses the same f as ours: step 0.4 is step 0.4.
- Poisson: f in the reference is w - y log w on the peak-scaled image w = peak * x; with peak = 1 (its demo) the
  alphas agree, otherwise ours = reference / peak^2.
- Single-photon: rho = 1 / alpha.
"""
import jax
import jax.numpy as jnp
from flax import struct

from zoo.inverse import mri


@struct.dataclass
class CSMRI:
  """Compressed-sensing MRI: f(x) = 1/2 |mask * F x - y|^2, F the orthonormal FFT (zoo.inverse.mri), y complex.

  The image is real, so the prox and gradient are those of f restricted to real images. The gradient is exactly
  Re A*(A x - y). The prox returns the real part of the complex closed form, as the paper does: that is the exact
  real prox when the mask is symmetric under k -> -k, and otherwise still the prox of a convex quadratic on real
  images (its linear part F^H diag(symmetrised 1 / (1 + alpha mask)) F is symmetric with eigenvalues in (0, 1]), so
  the convergence theory still holds, where the exact real prox would need an inner solver.
  """
  mask: jax.Array
  y: jax.Array

  @classmethod
  def simulate(cls, x_true, mask, key=None, noise_std: float = 0.0, noise=None):
    """y = mask * (F x_true + noise): `noise` given (complex, orthonormal units), else complex Gaussian of total
    standard deviation `noise_std` per sample drawn from `key` (none when noise_std = 0)."""
    k = mri.fft2c(x_true)
    if noise is None and noise_std:
      real, imag = jax.random.normal(key, (2,) + k.shape)
      noise = noise_std / jnp.sqrt(2.0) * (real + 1j * imag)
    k = k if noise is None else k + noise
    mask = jnp.asarray(mask, jnp.float32)
    return cls(mask=mask, y=mask * k)

  def prox(self, z, alpha):
    k = (mri.fft2c(z) + alpha * self.mask * self.y) / (1.0 + alpha * self.mask)
    return jnp.real(mri.ifft2c(k))

  def grad(self, x):
    return jnp.real(mri.adjoint(mri.forward(x, self.mask) - self.y, self.mask))

  def project(self, x):
    return x

  def initial(self):
    """|zero-filled|: the magnitude of A* y, where the reference's PnP-ADMM starts."""
    return jnp.abs(mri.adjoint(self.y, self.mask))


@struct.dataclass
class ComplexCSMRI:
  """CS-MRI of a complex image, held as its real and imaginary parts [H, W, 2] (zoo.inverse.mri.to_channels), so
  that a denoiser of real images can regularise each part. f(x) = 1/2 |mask * F x - y|^2 on C^n = R^2n: its prox
  is exact in closed form here, (F z + alpha mask y) / (1 + alpha mask) in k-space, with nothing dropped."""
  mask: jax.Array
  y: jax.Array

  def prox(self, z, alpha):
    k = (mri.fft2c(mri.from_channels(z)) + alpha * self.mask * self.y) / (1.0 + alpha * self.mask)
    return mri.to_channels(mri.ifft2c(k))

  def grad(self, x):
    return mri.to_channels(mri.adjoint(mri.forward(mri.from_channels(x), self.mask) - self.y, self.mask))

  def project(self, x):
    return x

  def initial(self):
    """The zero-filled image A* y."""
    return mri.to_channels(mri.adjoint(self.y, self.mask))


@struct.dataclass
class Poisson:
  """Poisson denoising: y ~ Poisson(peak * x); f(x) = sum(peak x - y log(peak x)), its negative log-likelihood.

  prox: the positive root of x^2 - (z - alpha peak) x - alpha y = 0, i.e. x = (t + sqrt(t^2 + 4 alpha y)) / 2 with
  t = z - alpha peak (pnp_admm_poisson_denoise.py, there with peak = 1 and lam = 1 / alpha).
  """
  y: jax.Array
  peak: float = 1.0

  @classmethod
  def simulate(cls, x_true, key, peak: float = 1.0):
    """Counts at `peak` photons for intensity 1. The reference's demo also lifts zeros of x_true to the smallest
    positive value first (Demo_mat/poisson_noise_generator.m)."""
    return cls(y=jax.random.poisson(key, peak * jnp.asarray(x_true)).astype(jnp.float32), peak=peak)

  def prox(self, z, alpha):
    t = z - alpha * self.peak
    return (t + jnp.sqrt(jnp.square(t) + 4.0 * alpha * self.y)) / 2.0

  def grad(self, x):
    """peak - y / x where x > 0; zero elsewhere, where the reference leaves a pixel to `project`."""
    positive = x > 0
    return jnp.where(positive, self.peak - self.y / jnp.where(positive, x, 1.0), 0.0)

  def project(self, x):
    return jnp.maximum(x, 0.0)

  def initial(self):
    return self.y / self.peak


@struct.dataclass
class SinglePhoton:
  """Single-photon imaging: each pixel is seen by `sensors` (= K^2) binary sensors, each firing with probability
  1 - exp(-x); `counts` (K1) of them fired. f(x) = sum(K0 x - K1 log(1 - exp(-x))), K0 = sensors - K1.

  prox (pnp_admm_photon_imaging.py, `inverse_step`): where K1 = 0, z - alpha K0; elsewhere the root of
  K1 / (e^x - 1) - x / alpha - K0 + z / alpha (decreasing in x) by `BISECTION_STEPS` bisection steps on
  `BRACKET`; then clipped to [0, 1], which makes it the exact prox of f + the indicator of [0, 1] (f is separable
  and convex).
  """
  counts: jax.Array
  sensors: float

  BRACKET = (1e-5, 100.0)
  BISECTION_STEPS = 30

  @classmethod
  def from_binary(cls, binary, block: int):
    """From the binary sensor frame [block H, block W] (the demo's `ob`, block = K = 8)."""
    h, w = binary.shape[0] // block, binary.shape[1] // block
    counts = jnp.asarray(binary, jnp.float32).reshape(h, block, w, block).sum(axis=(1, 3))
    return cls(counts=counts, sensors=float(block * block))

  @classmethod
  def simulate(cls, x_true, key, block: int = 8):
    fine = jnp.repeat(jnp.repeat(jnp.asarray(x_true), block, axis=0), block, axis=1)
    return cls.from_binary(jax.random.bernoulli(key, -jnp.expm1(-fine)), block)

  def prox(self, z, alpha):
    zeros = self.sensors - self.counts
    lo, hi = (jnp.full(jnp.shape(z), b, jnp.float32) for b in self.BRACKET)

    def halve(_, bracket):
      lo, hi = bracket
      mid = (lo + hi) / 2.0
      slope = self.counts / jnp.expm1(mid) - (mid - z) / alpha - zeros
      return jnp.where(slope > 0, mid, lo), jnp.where(slope < 0, mid, hi)

    lo, hi = jax.lax.fori_loop(0, self.BISECTION_STEPS, halve, (lo, hi))
    x = jnp.where(self.counts > 0, (lo + hi) / 2.0, z - alpha * zeros)
    return jnp.clip(x, 0.0, 1.0)

  def initial(self):
    """K1 / K^2, the fraction of sensors that fired (the reference's start)."""
    return self.counts / self.sensors
