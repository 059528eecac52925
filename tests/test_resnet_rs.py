"""ResNet-RS: registry, call convention, architecture facts, parameter counts equal to timm's."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import init_variables
import zoo
from zoo.models import resnet_rs

# timm's resnetrs* (1000 classes), exact.
TIMM_PARAMS = {50: 35_691_912, 101: 63_618_696, 152: 86_621_576, 200: 93_209_992, 270: 129_861_448,
               350: 163_956_168, 420: 191_891_656}
SMALL = dict(stage_depths=(1, 2, 1, 1), width_multiplier=0.125, num_classes=7)


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_registry_lists_the_family():
  family = [m for m in zoo.list_models() if m.startswith('resnetrs')]
  assert [f'resnetrs{d}' for d in sorted(TIMM_PARAMS)] == sorted(family, key=lambda n: int(n[8:]))
  assert {'num_classes', 'dropout_rate', 'stochastic_depth_rate', 'dtype', 'width_multiplier',
          'stage_depths', 'scan_blocks'} <= set(zoo.model_fields('resnetrs50'))


@pytest.mark.slow
@pytest.mark.parametrize('depth', sorted(TIMM_PARAMS))
def test_parameter_count_equals_timm(depth):
  model = zoo.create_model(f'resnetrs{depth}')
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert set(shapes) == {'params', 'batch_stats'}
  assert count(shapes['params']) == TIMM_PARAMS[depth]
  blocks = [k for k in shapes['params'] if '_block' in k]
  assert len(blocks) == sum(resnet_rs.DEPTHS[depth])


def perturbed(variables, seed=2):
  """`variables` plus noise (batch statistics kept positive): initialised ones make every residual branch zero (the
  last BN's gamma is), so that a test would see nothing of the blocks. The noise is numpy's: drawn by jax leaf by
  leaf, each shape's draw compiled apart."""
  rng = np.random.default_rng(seed)
  v = jax.tree.map(lambda a: a + 0.2 * rng.standard_normal(a.shape).astype(a.dtype), jax.device_get(variables))
  return {'params': v['params'], 'batch_stats': jax.tree.map(np.abs, v['batch_stats'])}


def relative_error(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.fixture(scope='module')
def small():
  x = jax.random.normal(jax.random.key(1), (4, 40, 40, 3))
  return perturbed(init_variables(zoo.create_model('resnetrs50', **SMALL), 0, x)), x


@pytest.mark.slow
def test_call_convention_and_training_mode(small):
  variables, x = small
  model = zoo.create_model('resnetrs50', dropout_rate=0.5, stochastic_depth_rate=0.5, **SMALL)
  logits = model.apply(variables, x)  # train defaults to False
  assert logits.shape == (4, 7) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, model.apply(variables, x, train=False))
  _, updates = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats'])
  stats = jax.tree.leaves(updates['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(stats, jax.tree.leaves(variables['batch_stats'])))
  with pytest.raises(flax.errors.InvalidRngError, match='StochasticDepth_0 needs PRNG for "dropout"'):
    model.apply(variables, x, train=True, mutable=['batch_stats'])


@pytest.mark.slow
@pytest.mark.parametrize('kwargs', [{'dropout_rate': 0.5, 'stochastic_depth_rate': 0.0},
                                    {'dropout_rate': 0.0, 'stochastic_depth_rate': 0.5}])
def test_dropout_and_stochastic_depth_each_draw_from_the_dropout_rng_in_training(small, kwargs):
  """Two draws differ by far (stochastic depth alone: 37% of the logits, measured) and one draw repeats."""
  variables, x = small
  model = zoo.create_model('resnetrs50', **kwargs, **SMALL)
  run = jax.jit(lambda key: model.apply(variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])[0])
  a, b = run(jax.random.key(2)), run(jax.random.key(3))
  assert relative_error(a, b) > 0.1
  np.testing.assert_array_equal(a, run(jax.random.key(2)))


@pytest.mark.slow
def test_architecture_facts():
  model = zoo.create_model('resnetrs50')
  p = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))['params']
  stem = [p['stem'][f'conv{i}']['conv']['kernel'].shape for i in (1, 2, 3)] + [p['stem']['pool']['conv']['kernel'].shape]
  assert stem == [(3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 64)]  # deep stem, conv for max-pool
  block = p['stage2_block0']
  assert block['conv2']['conv']['kernel'].shape == (3, 3, 128, 128)
  assert block['se']['reduce']['kernel'].shape == (1, 1, 512, 128)  # SE ratio 0.25 of 4w
  assert block['shortcut']['conv']['kernel'].shape == (1, 1, 256, 512)  # ResNet-D: 1x1 after the avg-pool
  assert 'shortcut' not in p['stage2_block1']
  # The initial values, on a member of fewer and narrower blocks (the same modules; RS-50's init takes 10 s to compile).
  small = zoo.create_model('resnetrs50', stage_depths=(1, 1, 3, 1), width_multiplier=0.25)
  real = init_variables(small, 0, jnp.zeros((1, 32, 32, 3)))['params']
  assert np.all(real['stage3_block2']['conv3']['bn']['scale'] == 0)  # zero-initialised last BN gamma
  assert np.all(real['stage3_block2']['conv2']['bn']['scale'] == 1)
  assert abs(float(real['head']['kernel'].std()) - 0.01) < 1e-3


@pytest.mark.slow
def test_stochastic_depth_is_tf1_per_stage():
  """TF1: one rate per stage, rate * i / 5 for the paper's stages i = 2..5."""
  from zoo.models.layers import StochasticDepth
  model = zoo.create_model('resnetrs50', stochastic_depth_rate=0.1, stage_depths=(2, 1, 3, 1), width_multiplier=0.125)
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, StochasticDepth):
      seen.setdefault(context.module.path[0].split('_')[0], set()).add(context.module.rate)
    return next_fun(*args, **kwargs)

  x = jnp.ones((1, 32, 32, 3))
  with nn.intercept_methods(record):
    init_variables(model, 0, x)
  assert {k: sorted(v) for k, v in seen.items()} == {
      'stage1': [pytest.approx(0.04)], 'stage2': [pytest.approx(0.06)], 'stage3': [pytest.approx(0.08)],
      'stage4': [pytest.approx(0.1)]}


@pytest.mark.slow
def test_symmetric_padding_and_odd_maps():
  """Odd feature maps reach the average-pooled shortcut; ceil mode keeps the last row, as timm."""
  from zoo.models.layers import avg_pool_2x2_ceil
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  pooled = avg_pool_2x2_ceil(x)[0, :, :, 0]
  assert pooled.shape == (3, 3)
  np.testing.assert_allclose(pooled[0, 0], np.mean([0, 1, 5, 6]))
  np.testing.assert_allclose(pooled[2, 2], 24.0)  # only the valid corner pixel
  np.testing.assert_allclose(pooled[0, 2], np.mean([4, 9]))
  model = zoo.create_model('resnetrs50', **SMALL)
  x = jnp.ones((1, 36, 44, 3))
  assert model.apply(init_variables(model, 0, x), x).shape == (1, 7)


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_with_float32_params(small):
  """bf16 logits within 2% of float32's (0.78% measured); a residual branch left out moves them by 32%."""
  variables, x = small
  model = zoo.create_model('resnetrs50', dtype='bfloat16', **SMALL)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(init_variables(model, 0, x)))
  hlo = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).as_text()
  assert 'bf16' in hlo
  f32 = zoo.create_model('resnetrs50', **SMALL).apply(variables, x)
  out = model.apply(variables, x)
  assert out.dtype == jnp.float32 and relative_error(out, f32) < 2e-2
  assert float(jnp.abs(f32).max()) > 1  # logits of a trained network's size, not initialisation's 0.03


def test_width_multiplier_and_stage_depths_make_a_small_member():
  model = zoo.create_model('resnetrs50', stage_depths=(1, 1, 1, 1), width_multiplier=0.25, num_classes=10)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
  assert count(shapes['params']) == 688_610  # the quickstart model (0.69 M)
