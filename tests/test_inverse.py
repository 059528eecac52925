"""The MRI operator, the data terms against brute-force minimisation, and the plug-and-play solvers."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.scipy.signal import convolve2d

from zoo.errors import UserError
from zoo.inverse import data_terms, mri, paper_data, pnp
from zoo.metrics import psnr

# The plug-and-play paper's data (layout and origin: projects/pnp/README.md), where $ZOO_PNP_DATA points.
DATA_DIR = os.environ.get('ZOO_PNP_DATA', '')
needs_data = pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="ZOO_PNP_DATA names no directory")


def complex_normal(seed, shape):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def blobs(n, seed=0):
  """A smooth test image in [0, 1]: five Gaussian bumps."""
  rng = np.random.default_rng(seed)
  r, c = np.mgrid[:n, :n] / n
  img = sum(rng.uniform(0.3, 1) * np.exp(-((r - rng.uniform(.2, .8)) ** 2 + (c - rng.uniform(.2, .8)) ** 2)
                                         / (2 * rng.uniform(.05, .15) ** 2)) for _ in range(5))
  return (img / img.max()).astype(np.float32)


def gaussian_blur(sigma):
  """A linear smoothing denoiser; symmetric with eigenvalues in (0, 1], so both solvers converge with it."""
  t = np.arange(-3, 4)
  g = np.exp(-t ** 2 / (2 * sigma ** 2))
  kernel = jnp.asarray(np.outer(g, g) / np.outer(g, g).sum(), jnp.float32)
  return lambda x: convolve2d(x, kernel, mode='same')


def image_psnr(x, reference):
  return float(psnr(x, reference, axes=(-2, -1)))


# ---- the MRI operator ----

def test_fft_is_orthonormal():
  x = complex_normal(0, (3, 24, 32))
  np.testing.assert_allclose(mri.ifft2c(mri.fft2c(x)), x, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(mri.fft2c(x)), np.linalg.norm(x), rtol=1e-5)
  np.testing.assert_allclose(mri.to_channels(x).shape, (3, 24, 32, 2))
  np.testing.assert_array_equal(mri.from_channels(mri.to_channels(x)), x)


@pytest.mark.parametrize('kind', mri.MASK_KINDS)
def test_adjoint(kind):
  mask = mri.make_mask(kind, (24, 32), rate=0.3, seed=1)
  x, y = complex_normal(2, (24, 32)), complex_normal(3, (24, 32))
  lhs = np.vdot(mri.forward(x, mask), y)
  rhs = np.vdot(x, mri.adjoint(y, mask))
  assert abs(lhs - rhs) < 1e-4 * abs(lhs)


@pytest.mark.parametrize('kind', mri.MASK_KINDS)
@pytest.mark.parametrize('shape,request_', [((64, 64), {'rate': 0.3}), ((96, 128), {'rate': 0.1}),
                                            ((64, 64), {'accel': 4})])
def test_mask_rate_and_determinism(kind, shape, request_):
  mask = mri.make_mask(kind, shape, seed=5, **request_)
  rate = request_.get('rate') or 1 / request_['accel']
  assert mask.shape == shape and mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
  assert abs(mask.mean() - rate) < 0.02
  assert mask[0, 0] == 1.0  # DC, in the unshifted layout
  np.testing.assert_array_equal(mask, mri.make_mask(kind, shape, seed=5, **request_))
  assert np.any(mask != mri.make_mask(kind, shape, seed=6, **request_))


def test_mask_layouts():
  cartesian = mri.make_mask('cartesian', (64, 64), rate=0.3, center_fraction=0.125)
  assert set(cartesian.sum(axis=0)) == {0.0, 64.0}  # whole columns
  assert cartesian[:, list(range(4)) + list(range(60, 64))].all()  # the centre band around DC
  random = np.fft.fftshift(mri.make_mask('random', (64, 64), rate=0.3))
  assert random[24:40, 24:40].mean() > 0.9 and random[:8].mean() < 0.2  # density decays away from DC
  with pytest.raises(UserError):
    mri.make_mask('spiral', (8, 8), rate=0.3)
  with pytest.raises(UserError):
    mri.make_mask('random', (8, 8), rate=0.3, accel=3)


@pytest.mark.parametrize('kind', ['cartesian', 'random'])
def test_masks_of_one_seed_are_nested(kind):
  """A higher acceleration samples a subset of a lower one's k-space (same seed), so zero-filled error can only
  grow with the acceleration."""
  masks = [mri.make_mask(kind, (64, 64), accel=a, seed=3) for a in (2, 4, 8)]
  for denser, sparser in zip(masks, masks[1:]):
    assert sparser.sum() < denser.sum() and np.all(sparser <= denser)


# ---- data terms ----

def dense_operator(mask):
  """mask * F as a dense matrix on row-major vectorised images."""
  h, w = mask.shape
  f = np.kron(np.fft.fft(np.eye(h), norm='ortho'), np.fft.fft(np.eye(w), norm='ortho'))
  return mask.reshape(-1, 1) * f


@pytest.mark.slow
def test_csmri_prox_and_grad():
  mask = mri.make_mask('random', (8, 8), rate=0.4, seed=0, center_fraction=0.1)
  term = data_terms.CSMRI.simulate(np.random.default_rng(0).uniform(size=(8, 8)), mask, key=jax.random.key(0),
                                   noise_std=0.1)
  z, alpha = np.random.default_rng(1).normal(size=(8, 8)), 0.7
  a, y = dense_operator(mask), np.asarray(term.y).ravel()
  # The complex closed form, then its real part.
  complex_prox = np.linalg.solve(np.eye(64) + alpha * a.conj().T @ a, z.ravel() + alpha * a.conj().T @ y)
  np.testing.assert_allclose(term.prox(z, alpha), complex_prox.real.reshape(8, 8), atol=1e-5)
  # For a mask symmetric under k -> -k that is the exact prox over real images.
  symmetric = np.maximum(mask, np.roll(mask[::-1, ::-1], 1, axis=(0, 1)))
  term = data_terms.CSMRI.simulate(np.random.default_rng(0).uniform(size=(8, 8)), symmetric)
  a, y = dense_operator(symmetric), np.asarray(term.y).ravel()
  real_prox = np.linalg.solve((a.conj().T @ a).real + np.eye(64) / alpha, (a.conj().T @ y).real + z.ravel() / alpha)
  np.testing.assert_allclose(term.prox(z, alpha), real_prox.reshape(8, 8), atol=1e-5)
  f = lambda x: 0.5 * jnp.sum(jnp.abs(mri.forward(x, term.mask) - term.y) ** 2)
  np.testing.assert_allclose(term.grad(jnp.asarray(z, jnp.float32)), jax.grad(f)(jnp.asarray(z, jnp.float32)),
                             atol=1e-5)


def test_poisson_prox_matches_numeric_minimisation():
  term = data_terms.Poisson(y=jnp.array([0.0, 1.0, 3.0, 12.0]), peak=4.0)
  z, alpha = np.array([0.2, -0.3, 0.9, 2.5]), 0.3
  got = np.asarray(term.prox(z, alpha))
  for i in range(4):
    objective = lambda x: term.peak * x - float(term.y[i]) * np.log(term.peak * x) + (x - z[i]) ** 2 / (2 * alpha)
    want = scipy.optimize.minimize_scalar(objective, bounds=(1e-9, 10), method='bounded',
                                          options={'xatol': 1e-10}).x
    assert got[i] == pytest.approx(want, abs=1e-4)
  x = jnp.array([0.5, 1.0, -0.2, 2.0])
  f = lambda x: jnp.sum(term.peak * x - term.y * jnp.log(term.peak * x))
  np.testing.assert_allclose(np.asarray(term.grad(x))[[0, 1, 3]], np.asarray(jax.grad(f)(x))[[0, 1, 3]], rtol=1e-5)
  assert float(term.grad(x)[2]) == 0.0 and float(term.project(x)[2]) == 0.0


def test_single_photon_prox_matches_numeric_minimisation():
  counts = np.array([0.0, 1.0, 20.0, 40.0, 64.0])
  term = data_terms.SinglePhoton(counts=jnp.asarray(counts), sensors=64.0)
  z, alpha = np.array([0.5, 0.1, 0.3, 0.6, 0.9]), 0.01
  got = np.asarray(jax.jit(term.prox)(z, alpha))
  for i in range(5):
    objective = lambda x: ((64 - counts[i]) * x - counts[i] * np.log(-np.expm1(-x)) + (x - z[i]) ** 2 / (2 * alpha))
    want = scipy.optimize.minimize_scalar(objective, bounds=(1e-9, 1.0), method='bounded',
                                          options={'xatol': 1e-10}).x
    assert got[i] == pytest.approx(want, abs=1e-4)
  assert got[-1] == 1.0  # all sensors fired: pushed past 1, clipped


def test_single_photon_simulation_follows_the_model():
  x = blobs(32)
  term = data_terms.SinglePhoton.simulate(x, jax.random.key(0), block=8)
  assert term.counts.shape == (32, 32) and term.sensors == 64.0
  assert float(term.initial().mean()) == pytest.approx(float(np.mean(-np.expm1(-x))), abs=0.01)


# ---- plug-and-play ----

def assert_residuals_decay(residual):
  """Geometric decay down to float32 round-off (~1e-6), strictly monotone above it."""
  residual = np.asarray(residual)
  assert residual[-1] < 1e-5 * residual[0]
  assert np.all(np.diff(residual[residual > 1e-5]) < 0)


def denoising_problem(n=16):
  """A full mask makes CS-MRI plain denoising: f(x) = |x - d|^2 / 2."""
  d = np.random.default_rng(0).uniform(size=(n, n)).astype(np.float32)
  return d, data_terms.CSMRI.simulate(d, np.ones((n, n), np.float32))


@pytest.mark.parametrize('prox_first', [False, True])
def test_admm_fixed_point_by_hand(prox_first):
  """D(x) = lam x: at the fixed point x = D(x - alpha grad f(x)), so x = lam alpha d / (1 - lam + lam alpha)."""
  d, term = denoising_problem()
  lam, alpha = 0.8, 0.5
  x, history = pnp.pnp_admm(lambda v: lam * v, term, jnp.zeros_like(d), alpha=alpha, iterations=60,
                            prox_first=prox_first)
  np.testing.assert_allclose(x, lam * alpha * d / (1 - lam + lam * alpha), atol=1e-5)
  assert_residuals_decay(history['residual'])


def test_fbs_fixed_point_by_hand():
  d, term = denoising_problem()
  lam, step = 0.8, 0.5
  x, history = pnp.pnp_fbs(lambda v: lam * v, term, jnp.zeros_like(d), step=step, iterations=60)
  np.testing.assert_allclose(x, lam * step * d / (1 - lam + lam * step), atol=1e-5)
  assert_residuals_decay(history['residual'])


def test_admm_with_identity_denoiser_minimises_f():
  x_true = blobs(32)
  term = data_terms.CSMRI.simulate(x_true, mri.make_mask('radial', (32, 32), rate=0.3), key=jax.random.key(1),
                                   noise_std=0.05)
  x, history = pnp.pnp_admm(lambda v: v, term, term.initial(), alpha=1.0, iterations=40)
  assert float(jnp.linalg.norm(term.grad(x))) < 1e-4 * float(jnp.linalg.norm(term.grad(term.initial())))
  assert float(history['residual'][-1]) < 1e-4


def test_pnp_beats_zero_filling_on_cs_mri():
  """30% variable-density samples of a smooth 64 x 64 image, noise 0.05: zero-filling gives 32.9 dB, ADMM and FBS
  with a Gaussian blur as denoiser 39.2 and 38.8 dB."""
  x_true = blobs(64)
  term = data_terms.CSMRI.simulate(x_true, mri.make_mask('random', (64, 64), rate=0.3), key=jax.random.key(0),
                                   noise_std=0.05)
  zero_filled = image_psnr(term.initial(), x_true)
  blur = gaussian_blur(1.0)
  x_admm, admm = pnp.pnp_admm(blur, term, term.initial(), alpha=2.0, iterations=50, x_true=x_true)
  x_fbs, fbs = pnp.pnp_fbs(blur, term, term.initial(), step=1.0, iterations=50, x_true=x_true)
  assert zero_filled == pytest.approx(32.9, abs=0.3)
  assert image_psnr(x_admm, x_true) - zero_filled > 5.5
  assert image_psnr(x_fbs, x_true) - zero_filled > 5.0
  assert float(admm['psnr'][-1]) == pytest.approx(image_psnr(x_admm, x_true), abs=1e-4)
  assert admm['psnr'].shape == fbs['residual'].shape == (50,)
  assert float(admm['residual'][-1]) < 1e-4 and float(fbs['residual'][-1]) < 1e-4


def test_admm_matches_the_reference_csmri_loop():
  """The reference's loop (pnp_admm_csmri.py) restated in numpy: unnormalised FFT, its prox weight 1 / (2 alpha),
  Douglas-Rachford order, min-max rescaled denoiser input. Ours with alpha = 2 * theirs gives the same iterates."""
  x_true = blobs(32)
  mask = mri.make_mask('random', (32, 32), rate=0.3)
  noise = 3.0 * complex_normal(4, (32, 32))
  y = np.fft.fft2(x_true) * mask + noise
  alpha, sigma = 2.0, 15
  blur = jax.jit(gaussian_blur(1.0))
  scale = 1.0 + sigma / 255.0 / 2.0
  shift = (1.0 - scale) / 2.0
  x = np.abs(np.fft.ifft2(y))
  x0, u = x.copy(), np.zeros_like(x)
  for _ in range(10):
    vf = np.fft.fft2(x + u)
    weight = 1.0 / 2.0 / alpha
    vf[mask > 0] = (weight * vf[mask > 0] + y[mask > 0]) / (1.0 + weight)
    v = np.real(np.fft.ifft2(vf))
    xtilde = 2 * v - x - u
    lo, hi = xtilde.min(), xtilde.max()
    denoised = np.asarray(blur(((xtilde - lo) / (hi - lo) * scale + shift).astype(np.float32)))
    u = u + x - v
    x = (denoised - shift) / scale * (hi - lo) + lo
  term = data_terms.CSMRI.simulate(x_true, mask, noise=noise / 32.0)
  ours, _ = pnp.pnp_admm(pnp.rescaled(blur, scale=scale), term, x0, alpha=2 * alpha, iterations=10)
  np.testing.assert_allclose(ours, x, atol=2e-5)


@pytest.mark.slow
def test_poisson_and_single_photon_runs():
  """The paper's other two problems end to end on 32 x 32, with the reference's rescaling of the denoiser input."""
  x_true = blobs(32)
  poisson = data_terms.Poisson.simulate(x_true, jax.random.key(0), peak=20.0)
  noisy = image_psnr(poisson.initial(), x_true)
  denoiser = pnp.rescaled(gaussian_blur(0.7))
  x_admm, _ = pnp.pnp_admm(denoiser, poisson, poisson.initial(), alpha=0.01, iterations=30, x_true=x_true)
  x_fbs, _ = pnp.pnp_fbs(denoiser, poisson, poisson.initial(), step=0.003, iterations=30, x_true=x_true)
  # Measured: 21.2 dB noisy, 28.0 ADMM, 25.4 FBS (whose step must stay small: y / x^2 is not bounded).
  assert image_psnr(x_admm, x_true) - noisy > 6.0 and image_psnr(x_fbs, x_true) - noisy > 3.5
  photon = data_terms.SinglePhoton.simulate(x_true, jax.random.key(1), block=4)
  start = image_psnr(photon.initial(), x_true)
  x, history = pnp.pnp_admm(pnp.rescaled(gaussian_blur(0.7), scale=0.4, floor=0.0), photon, photon.initial(),
                            alpha=0.03, iterations=15, x_true=x_true, prox_first=True)
  # Measured: 20.0 dB for K1 / K^2, 25.4 after 15 iterations.
  assert image_psnr(x, x_true) - start > 4.5 and float(history['residual'][-1]) < 0.01


def test_rescaled_denoiser_sees_the_reference_range():
  seen = {}
  def spy(v):
    seen['range'] = (jnp.min(v), jnp.max(v))
    return v
  x = jnp.linspace(-0.3, 1.7, 16).reshape(4, 4)
  np.testing.assert_allclose(pnp.rescaled(spy, scale=1 + 15 / 510)(x), x, atol=1e-6)
  np.testing.assert_allclose(seen['range'], (-15 / 1020, 1 + 15 / 1020), atol=1e-6)
  pnp.rescaled(spy, scale=0.4, floor=0.0)(x + 0.3)
  np.testing.assert_allclose(seen['range'], (0.3, 0.7), atol=1e-6)


# ---- the paper's data ----

def test_missing_data_names_the_path(tmp_path):
  with pytest.raises(paper_data.MissingDataError, match=str(tmp_path / 'Demo_mat' / 'CS_MRI')):
    paper_data.load_csmri(str(tmp_path))
  with pytest.raises(UserError, match='Set12'):
    paper_data.load_images(str(tmp_path), 'Set12')


@needs_data
def test_paper_csmri_data():
  data = paper_data.load_csmri(DATA_DIR)
  rates = {kind: float(mask.mean()) for kind, mask in data['masks'].items()}
  assert rates == pytest.approx({'random': 0.3002, 'radial': 0.2937, 'cartesian': 0.2969}, abs=1e-4)
  brain = data['images']['Brain']
  assert brain.shape == (256, 256) and brain.dtype == np.float32 and brain.max() == 1.0
  assert np.std(data['kspace_noise'].real) == pytest.approx(0.0585, abs=0.001)
  # The paper's unnormalised measurement, divided by sqrt(H W), is ours.
  mask = data['masks']['random']
  theirs = (np.fft.fft2(brain) * mask + 3.0 * data['noises']) * mask / 256.0
  ours = data_terms.CSMRI.simulate(brain, mask, noise=data['kspace_noise']).y
  np.testing.assert_allclose(ours, theirs, atol=1e-4)


@needs_data
def test_paper_demos_and_image_sets():
  poisson = paper_data.load_demo(DATA_DIR, 'poisson')
  assert poisson['peak'] == 1.0 and poisson['maxval'] == 255.0
  assert poisson['noisy'].mean() == pytest.approx(poisson['clean_scaled'].mean(), abs=0.01)
  photon = paper_data.load_demo(DATA_DIR, 'single_photon')
  term = data_terms.SinglePhoton.from_binary(photon['ob'], 8)
  assert term.counts.shape == photon['im'].shape == (512, 512)
  assert float(term.initial().mean()) == pytest.approx(float(np.mean(-np.expm1(-photon['im']))), abs=1e-3)
  sizes = {subset: len(paper_data.load_images(DATA_DIR, subset)) for subset in paper_data.IMAGE_SETS}
  assert sizes == {'Set12': 12, 'Set68': 68, 'train': 400}
