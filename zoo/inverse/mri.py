"""The MRI measurement operator A = mask * F, shared by the plug-and-play solvers and the unrolled MRI networks.

F is the orthonormal 2-D FFT over the last two axes (norm='ortho'), so A* A is a projection and step sizes and noise
levels do not depend on the image size. There is no fftshift anywhere: masks live in numpy's unshifted FFT layout
(DC at [0, 0]), as the masks of the plug-and-play paper (Q_*30.mat) do.

Sampling masks come from `make_mask`; they are built around a centred DC (easier to describe) and shifted into the
unshifted layout at the end.
"""
import jax.numpy as jnp
import numpy as np

from zoo.errors import UserError

MASK_KINDS = ('cartesian', 'radial', 'random')


def fft2c(x):
  """Orthonormal 2-D FFT over the last two axes."""
  return jnp.fft.fft2(x, norm='ortho')


def ifft2c(k):
  """Inverse of `fft2c` (and its adjoint)."""
  return jnp.fft.ifft2(k, norm='ortho')


def forward(x, mask):
  """A x = mask * F x for images [..., H, W], real or complex."""
  return mask * fft2c(x)


def adjoint(y, mask):
  """A* y = F^H (mask * y): the zero-filled reconstruction of k-space samples y."""
  return ifft2c(mask * y)


def to_channels(z):
  """Complex [..., H, W] -> real [..., H, W, 2] (real, imaginary): what a real-valued network takes."""
  return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)


def from_channels(x):
  """Real [..., H, W, 2] -> complex [..., H, W]."""
  return x[..., 0] + 1j * x[..., 1]


def make_mask(kind: str, shape, rate=None, accel=None, seed: int = 0, center_fraction: float = 0.08,
              decay: float = 2.0) -> np.ndarray:
  """A 0/1 float32 k-space mask of `shape` (H, W), unshifted layout, deterministic in `seed`.

  Give the sampling `rate` (fraction of k-space) or the acceleration `accel` (rate = 1 / accel).
  - 'cartesian': full columns (phase-encoding lines along the last axis, as Q_Cartesian30.mat), a fully sampled
    centre band of `center_fraction` of the columns, the rest uniformly at random, taken in the order of one seeded
    permutation: masks of one seed are nested (8x samples a subset of 4x's lines), so accelerations compare fairly.
  - 'radial': lines through DC at equispaced angles (random offset), as many as bring the rate closest to the
    request; the centre is dense by construction.
  - 'random': a fully sampled disc of `center_fraction` of k-space, the rest drawn without replacement with density
    (1 - r / r_max)^decay in the distance r from DC, by seeded keys: nested across rates too.
  """
  if kind not in MASK_KINDS:
    raise UserError(f'mask kind {kind!r} unknown: choose one of {MASK_KINDS}')
  rate = _rate(rate, accel)
  rng = np.random.default_rng(seed)
  build = {'cartesian': _cartesian, 'radial': _radial, 'random': _variable_density}[kind]
  centred = build(tuple(shape), rate, rng, center_fraction=center_fraction, decay=decay)
  return np.fft.ifftshift(centred).astype(np.float32)


def _rate(rate, accel) -> float:
  if (rate is None) == (accel is None):
    raise UserError('give exactly one of rate (fraction of k-space sampled) and accel (= 1 / rate)')
  rate = 1.0 / accel if rate is None else rate
  if not 0.0 < rate <= 1.0:
    raise UserError(f'sampling rate {rate} must be in (0, 1]')
  return float(rate)


def _cartesian(shape, rate, rng, center_fraction, **_):
  w = shape[1]
  lines = max(1, round(rate * w))
  centre = min(lines, round(center_fraction * w))
  centre_cols = w // 2 - centre // 2 + np.arange(centre)
  others = np.setdiff1d(np.arange(w), centre_cols)
  cols = np.concatenate([centre_cols, rng.permutation(others)[:lines - centre]])
  mask = np.zeros(shape, bool)
  mask[:, cols] = True
  return mask


def _radial(shape, rate, rng, **_):
  offset = rng.uniform()

  def spokes(n):
    h, w = shape
    angles = (np.arange(n) + offset) * np.pi / n
    t = np.arange(-np.hypot(h, w) / 2, np.hypot(h, w) / 2, 0.5)
    rows = np.rint(h // 2 + np.outer(np.sin(angles), t)).astype(int).ravel()
    cols = np.rint(w // 2 + np.outer(np.cos(angles), t)).astype(int).ravel()
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    mask = np.zeros(shape, bool)
    mask[rows[inside], cols[inside]] = True
    return mask

  # Coverage grows with the number of spokes: bisect for the first count reaching the rate, then take the closer of
  # it and its predecessor.
  lo, hi = 1, 4 * max(shape)
  while lo < hi:
    mid = (lo + hi) // 2
    lo, hi = (mid + 1, hi) if spokes(mid).mean() < rate else (lo, mid)
  candidates = [spokes(n) for n in sorted({max(1, lo - 1), lo})]
  return min(candidates, key=lambda m: abs(m.mean() - rate))


def _variable_density(shape, rate, rng, center_fraction, decay, **_):
  h, w = shape
  rows, cols = np.meshgrid((np.arange(h) - h // 2) / (h / 2), (np.arange(w) - w // 2) / (w / 2), indexing='ij')
  r = np.hypot(rows, cols).ravel()
  total = max(1, round(rate * h * w))
  by_distance = np.argsort(r, kind='stable')
  centre = by_distance[:min(total, round(center_fraction * h * w))]
  rest = by_distance[centre.size:]
  weights = (1.0 - r[rest] / (r.max() * (1 + 1e-6))) ** decay
  # Gumbel top-k: an exact weighted draw without replacement, so the count (hence the rate) is exact.
  keys = np.log(weights) + rng.gumbel(size=rest.size)
  drawn = rest[np.argsort(-keys, kind='stable')[:total - centre.size]]
  mask = np.zeros(h * w, bool)
  mask[np.concatenate([centre, drawn])] = True
  return mask.reshape(shape)
