"""ResNet-RS `scan_blocks=True` is the same function of the same variables as the unrolled model, only compiled
once per stage; checked on a reduced member so it runs in seconds."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import init_variables
import zoo
from tests.test_resnet_rs import perturbed

# Parity at rtol 1e-5 of logits in the hundreds (compiled without XLA's optimisations, the scanned model's logits
# differ by up to 5e-4), and the memory XLA's optimised buffer assignment gives: those tests are marked `optimized`.

REDUCED = dict(stage_depths=(1, 3, 2, 1), width_multiplier=0.25, num_classes=10)


def models(**overrides):
  kw = {**REDUCED, **overrides}
  return zoo.create_model('resnetrs50', **kw), zoo.create_model('resnetrs50', scan_blocks=True, **kw)


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.key(1), (4, 32, 32, 3))


@pytest.fixture(scope='module')
def initial(images):
  unrolled, _ = models()
  return init_variables(unrolled, 0, images)


@pytest.fixture(scope='module')
def variables(initial):
  return perturbed(initial)


def assert_trees_close(a, b, rtol=1e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(np.max(np.abs(x)) + 1e-12))


def train_apply(model, variables, images, rng):
  return model.apply(variables, images, train=True, rngs={'dropout': rng}, mutable=['batch_stats'])


def test_registry_accepts_scan_blocks():
  assert 'scan_blocks' in zoo.model_fields('resnetrs420')
  assert zoo.create_model('resnetrs50', scan_blocks=True).scan_blocks


@pytest.mark.slow
@pytest.mark.optimized
def test_init_gives_identical_variables(initial, images):
  _, scanned = models()
  b = init_variables(scanned, 0, images)
  assert jax.tree.structure(initial) == jax.tree.structure(b)
  assert 'stage2_block2' in b['params'] and 'stage2_block2' in b['batch_stats']
  for x, y in zip(jax.tree.leaves(initial), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.optimized
def test_eval_logits_agree(variables, images):
  unrolled, scanned = models()
  assert_trees_close(jax.jit(unrolled.apply)(variables, images), jax.jit(scanned.apply)(variables, images))


@pytest.mark.slow
@pytest.mark.optimized
def test_train_logits_and_batch_stats_agree(variables, images):
  unrolled, scanned = models(dropout_rate=0.0, stochastic_depth_rate=0.0)
  logits_u, upd_u = jax.jit(train_apply, static_argnums=0)(unrolled, variables, images, jax.random.key(3))
  logits_s, upd_s = jax.jit(train_apply, static_argnums=0)(scanned, variables, images, jax.random.key(3))
  assert_trees_close(logits_u, logits_s)
  assert_trees_close(upd_u, upd_s)
  # The statistics really moved, and the scanned ones were written back under the per-block names.
  moved = upd_s['batch_stats']['stage2_block2']['conv1']['bn']['mean']
  assert not np.allclose(moved, variables['batch_stats']['stage2_block2']['conv1']['bn']['mean'])


def loss_gradient(model):
  """The gradient in the parameters of `model`'s cross-entropy in training mode, jitted: a function of (params,
  batch_stats, images); dropout and stochastic depth draw from a fixed key."""
  def loss(params, batch_stats, images):
    labels = jnp.arange(images.shape[0]) % REDUCED['num_classes']
    logits, _ = train_apply(model, {'params': params, 'batch_stats': batch_stats}, images, jax.random.key(3))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return jax.jit(jax.grad(loss))


@pytest.mark.slow
def test_gradients_agree_scanned_or_not_with_remat_or_not(variables, images):
  """`remat=True` recomputes each block in the backward pass: the same gradients as without, unrolled and scanned.
  Compiled without XLA's optimisations (in half the time), where they agree to 1e-4 of each array's largest entry
  (optimised, to 1e-5; a block recomputed wrong, or a scan that mixed up its blocks, is off by far more)."""
  grads = [loss_gradient(model)(variables['params'], variables['batch_stats'], images)
           for remat in (False, True) for model in models(dropout_rate=0.0, stochastic_depth_rate=0.0, remat=remat)]
  for g in grads[1:]:
    assert_trees_close(grads[0], g, rtol=1e-4)
  assert float(jnp.abs(grads[1]['stage2_block2']['conv2']['conv']['kernel']).max()) > 0


@pytest.mark.slow
@pytest.mark.optimized
def test_stochastic_depth_is_deterministic_per_rng(variables, images):
  _, scanned = models(dropout_rate=0.0, stochastic_depth_rate=0.5)
  run = jax.jit(train_apply, static_argnums=0)
  a = run(scanned, variables, images, jax.random.key(4))
  b = run(scanned, variables, images, jax.random.key(4))
  c = run(scanned, variables, images, jax.random.key(5))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert not np.allclose(a[0], c[0])  # the masks come from the rng


@pytest.mark.slow
@pytest.mark.optimized
@pytest.mark.parametrize('kernel,padding', [(3, ((1, 1), (1, 1))), (3, ((0, 2), (2, 0))), (1, 'SAME'), (3, 'VALID')])
def test_loop_friendly_conv_has_the_gradients_of_lax(kernel, padding):
  from zoo.models.layers import NHWC, loop_friendly_conv
  x = jax.random.normal(jax.random.key(6), (2, 7, 6, 5))
  w = jax.random.normal(jax.random.key(7), (kernel, kernel, 5, 3))
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)

  def loss(conv, x, w):
    return jnp.sum(jnp.sin(conv(x, w, (1, 1), padding, dimension_numbers=dn)))

  expected = jax.grad(functools.partial(loss, jax.lax.conv_general_dilated), argnums=(0, 1))(x, w)
  assert_trees_close(expected, jax.grad(functools.partial(loss, loop_friendly_conv), argnums=(0, 1))(x, w))


@pytest.mark.slow
@pytest.mark.optimized
def test_remat_under_scan_cuts_the_steps_memory():
  """Memory, from XLA's buffer assignment of the compiled gradient of a (1, 6, 1, 1) member at 128x128, batch 8
  (compiled from shapes, not run): scanned, 55.1 MiB of temporaries with remat against 79.4 without (2026-12-05,
  under the tests' XLA flags; `pytest -s tests/test_resnet_rs_scan.py -k memory` prints them; (3, 3, 3, 3) gave 64.5
  against 99.7 in twice the compile time). (Unrolled, XLA:CPU schedules the recomputation early and saves nothing;
  docs/memory.md.)"""
  deeper = {**REDUCED, 'stage_depths': (1, 6, 1, 1)}
  larger = jax.ShapeDtypeStruct((8, 128, 128, 3), jnp.float32)
  shapes = jax.eval_shape(zoo.create_model('resnetrs50', **deeper).init, jax.random.key(0), larger)
  temporaries = []
  for remat in (False, True):
    gradient = loss_gradient(zoo.create_model('resnetrs50', scan_blocks=True, remat=remat, **deeper))
    compiled = gradient.lower(shapes['params'], shapes['batch_stats'], larger).compile()
    temporaries.append(compiled.memory_analysis().temp_size_in_bytes)
  plain, remat = temporaries
  print(f'temporaries: {plain / 2**20:.1f} MiB without remat, {remat / 2**20:.1f} MiB with')  # pytest -s shows it
  assert remat < 0.75 * plain, (plain, remat)
