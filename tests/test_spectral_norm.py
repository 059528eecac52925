"""Spectral normalisation against the exact operator norm, and the Lipschitz bound of the RealSN denoisers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import init_variables
import zoo
from zoo.errors import UserError
from zoo.models.spectral_norm import SpectralNorm


def dense_norm(fn, shape, at=None):
  """Largest singular value of the Jacobian of `fn` at `at` (default 0; any point for a linear map) on inputs of
  `shape`, from its dense matrix."""
  at = jnp.zeros(shape) if at is None else at
  matrix = jax.jacfwd(lambda z: fn(z.reshape(shape)).reshape(-1))(at.reshape(-1))
  return float(np.linalg.norm(np.asarray(matrix, np.float64), 2))


def conv_norm(kernel, shape):
  conv = nn.Conv(kernel.shape[-1], kernel.shape[:2], padding='SAME', use_bias=False)
  return dense_norm(lambda z: conv.apply({'params': {'kernel': kernel}}, z), shape)


def power_iterate(module, variables, x, steps):
  """`steps` training-mode calls with fixed weights: only the power-iteration vectors move."""
  @jax.jit
  def step(stats, _):
    _, updates = module.apply({**variables, 'batch_stats': stats}, x, update_stats=True, mutable=['batch_stats'])
    return updates['batch_stats'], None
  stats, _ = jax.lax.scan(step, variables['batch_stats'], None, length=steps)
  return {**variables, 'batch_stats': stats}


def used_kernel(module, variables, x):
  _, state = module.apply(variables, x, mutable=['intermediates'])
  return state['intermediates']['kernel'][0]


@pytest.mark.slow
@pytest.mark.parametrize('channels', [(1, 1), (3, 5)])
def test_real_sn_matches_the_exact_operator_norm(channels):
  c_in, c_out = channels
  shape = (1, 8, 8, c_in)
  module = SpectralNorm(nn.Conv(c_out, (3, 3), padding='SAME', use_bias=True), mode='real', target=0.7)
  x = jax.random.normal(jax.random.key(0), shape)
  variables = power_iterate(module, init_variables(module, 1, x), x, steps=300)
  raw = variables['params']['layer']['kernel']
  exact = conv_norm(raw, shape)
  sigma = float(np.mean(np.asarray(raw) * 0.7 / np.asarray(used_kernel(module, variables, x))))
  assert sigma == pytest.approx(exact, rel=0.01)
  assert conv_norm(used_kernel(module, variables, x), shape) == pytest.approx(0.7, rel=0.01)


@pytest.mark.slow
def test_standard_sn_is_off_by_the_kernel_size_for_a_constant_kernel():
  """All nine taps equal: the reshaped kernel has norm 3, the convolution (nearly) 9, so standard SN leaves an
  operator of norm ~3 = the kernel size, where RealSN gives 1."""
  shape = (1, 16, 16, 1)
  x = jnp.ones(shape)
  ones = {'kernel': jnp.ones((3, 3, 1, 1))}
  norms = {}
  for mode in ('standard', 'real'):
    module = SpectralNorm(nn.Conv(1, (3, 3), padding='SAME', use_bias=False), mode=mode)
    variables = init_variables(module, 0, x)
    variables = power_iterate(module, {**variables, 'params': {'layer': ones}}, x, steps=300)
    norms[mode] = conv_norm(used_kernel(module, variables, x), shape)
  exact = (1 + 2 * np.cos(np.pi / 17)) ** 2  # norm of the 3x3 box filter on a zero-padded 16x16 image
  assert norms['standard'] == pytest.approx(exact / 3, rel=1e-4)  # 2.93
  assert norms['real'] == pytest.approx(1.0, rel=0.01)


@pytest.mark.slow
def test_no_gradient_flows_through_the_power_iteration():
  """The gradient of a training step equals the gradient with its updated vectors held as constants."""
  shape = (2, 6, 6, 2)
  module = SpectralNorm(nn.Conv(3, (3, 3), padding='SAME'), mode='real')
  x = jax.random.normal(jax.random.key(0), shape)
  variables = init_variables(module, 1, x)

  def loss(params, stats, update):
    y = module.apply({'params': params, 'batch_stats': stats}, x, update_stats=update, mutable=['batch_stats'])[0]
    return jnp.sum(jnp.sin(y))

  _, updates = module.apply(variables, x, update_stats=True, mutable=['batch_stats'])
  g_train = jax.grad(loss)(variables['params'], variables['batch_stats'], True)
  g_fixed = jax.grad(loss)(variables['params'], updates['batch_stats'], False)
  for a, b in zip(jax.tree.leaves(g_train), jax.tree.leaves(g_fixed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(g_train['layer']['kernel']).max()) > 0


def test_parameter_counts():
  counts = {}
  for name in ('dncnn', 'simplecnn'):
    shapes = jax.eval_shape(zoo.create_model(name).init, jax.random.key(0), jnp.zeros((1, 40, 40, 1)))
    counts[name] = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes['params']))
  # DnCNN: 9*64 + 15 * 9*64*64 + 9*64 weights, 15 BN (gamma, beta) pairs; SimpleCNN: 4 layers, no BN.
  assert counts == {'dncnn': 556_032, 'simplecnn': 74_880}


def residual_jacobian_norm(model, variables, x):
  return dense_norm(lambda z: model.apply(variables, z, method=model.residual), x.shape, at=x)


def power_iterated_simplecnn(spectral_norm, lipschitz, x):
  """A 16-feature SimpleCNN with non-negative weights: on a positive input every ReLU passes, the network is the
  product of its convolutions, whose leading singular vectors (positive, Perron) nearly align - the case where the
  product of the layer norms is almost attained, so the test can tell a bound from a loose one."""
  model = zoo.create_model('simplecnn', spectral_norm=spectral_norm, lipschitz=lipschitz, features=16)
  variables = init_variables(model, 1, x)
  variables = {**variables, 'params': jax.tree.map(jnp.abs, variables['params'])}
  if spectral_norm is None:
    return model, variables

  @jax.jit
  def step(stats, _):
    _, updates = model.apply({**variables, 'batch_stats': stats}, x, train=True, mutable=['batch_stats'])
    return updates['batch_stats'], None
  stats, _ = jax.lax.scan(step, variables['batch_stats'], None, length=300)
  return model, {**variables, 'batch_stats': stats}


@pytest.mark.slow
@pytest.mark.parametrize('lipschitz', [1.0, 0.5])
def test_realsn_simplecnn_residual_is_lipschitz(lipschitz):
  """Lip(I - D) <= lipschitz for the BN-free RealSN network: the dense Jacobian of N (ReLU makes N piecewise linear)
  on a 16x16 input has spectral norm <= lipschitz, up to the power iteration's tolerance. The same weights with
  standard SN, or without SN, exceed it."""
  x = jnp.ones((1, 16, 16, 1))
  norms = {}
  for mode in ('real', 'standard', None):
    model, variables = power_iterated_simplecnn(mode, lipschitz, x)
    norms[mode] = [residual_jacobian_norm(model, variables, jnp.abs(jax.random.normal(jax.random.key(s), x.shape)))
                   for s in range(3)]
  assert max(norms['real']) <= lipschitz * 1.001, norms
  assert min(norms['real']) > 0.8 * lipschitz, norms  # nearly attained: the bound is tight, not vacuous
  assert min(norms['standard']) > 2 * lipschitz, norms
  assert min(norms[None]) > 2 * lipschitz, norms


@pytest.mark.slow
def test_denoiser_modes_and_errors():
  model = zoo.create_model('dncnn', spectral_norm='real', depth=5)
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 1))
  variables = init_variables(model, 1, x)
  denoised, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert denoised.shape == x.shape
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(updates['batch_stats']),
                                                      jax.tree.leaves(variables['batch_stats']))]
  assert max(moved) > 0  # BN statistics and power-iteration vectors are updated in training
  big = model.apply(variables, jnp.ones((1, 30, 20, 1)), train=False)  # any image size in evaluation
  assert big.shape == (1, 30, 20, 1)
  with pytest.raises(UserError, match='spectral_norm must be one of'):
    zoo.create_model('simplecnn', spectral_norm='miyato')
