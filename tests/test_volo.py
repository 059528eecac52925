"""VOLO: parameter counts and parity with timm, outlook attention's fold/unfold, the training contract (MixToken,
token labelling outputs), drop path, cross-replica BN, position-embedding resizing and config errors.

Fixtures come from `tools/make_timm_fixtures.py --volo` (small timm VOLOs with random weights); no torch or timm here.
"""
import json
import os

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

import zoo
from tests.helpers import ROOT
from zoo.convert import ConversionError, from_timm, load_weights
from zoo.errors import UserError
from zoo.models import volo
from zoo.models.layers import StochasticDepth

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'timm')
with open(os.path.join(FIXTURES, 'volo_models.json')) as _f:
  MODELS = json.load(_f)
TOLERANCE = 1e-4
# timm's volo_d* at 224 (1000 classes), exact.
TIMM_PARAMS = {'volo_d1': 26_632_040, 'volo_d2': 58_678_336, 'volo_d3': 86_325_072, 'volo_d4': 192_961_520,
               'volo_d5': 295_455_584}
# A small member for behaviour tests: 2x2 aux grid at 32x32.
SMALL = dict(layers=(1, 2, 1), embed_dims=(16, 24, 24), num_heads=(2, 3, 2), stem_hidden_dim=8, num_classes=6,
             image_size=32)


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_variables(model, hw):
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))


def random_variables(model, hw, seed=0):
  """Variables with random values of the model's shapes, drawn by numpy: compiling flax's init for a test model
  takes seconds on CPU (one threefry per variable)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'var':
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    if name == 'scale':
      return (1 + 0.1 * rng.normal(size=leaf.shape)).astype(leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if name == 'kernel' else 25
    return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract_variables(model, hw))


def test_registry_lists_the_family():
  assert {f'volo_d{i}' for i in range(1, 6)} <= set(zoo.list_models())
  assert {'image_size', 'num_classes', 'drop_path_rate', 'dtype', 'mix_token', 'bn_axis_name', 'layers',
          'embed_dims', 'num_heads', 'mlp_ratio', 'stem_hidden_dim'} <= set(zoo.model_fields('volo_d1'))
  model = zoo.create_model('volo_d1')
  assert model.drop_path_rate == 0.0 and model.mix_token and model.bn_axis_name is None


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(TIMM_PARAMS))
def test_parameter_count_equals_timm(name):
  shapes = abstract_variables(zoo.create_model(name), (224, 224))
  assert set(shapes) == {'params', 'batch_stats'}
  assert count(shapes['params']) == TIMM_PARAMS[name]
  assert shapes['params']['pos_embed'].shape[:3] == (1, 14, 14)


@pytest.mark.parametrize('size,grid', [(384, 24), (448, 28), (512, 32)])
def test_image_size_sizes_the_position_embedding(size, grid):
  shapes = abstract_variables(zoo.create_model('volo_d1', image_size=size), (size, size))
  assert shapes['params']['pos_embed'].shape == (1, grid, grid, 384)
  if size == 384:
    assert count(shapes['params']) == 26_777_960  # timm's volo_d1_384


@pytest.mark.parametrize('size', [200, 225, (224, 100), 0])
def test_image_size_must_be_a_multiple_of_16(size):
  with pytest.raises(UserError, match=r'image_size must be positive multiples of 16 .*8x patch stem'):
    zoo.create_model('volo_d1', image_size=size)


def test_bad_architecture_and_input_size_errors():
  with pytest.raises(UserError, match='equally long'):
    zoo.create_model('volo_d1', layers=(4, 4, 8))
  with pytest.raises(UserError, match='divide into num_heads'):
    zoo.create_model('volo_d1', num_heads=(5, 12, 12, 12))
  model = zoo.create_model('volo_d1', **SMALL)
  variables = abstract_variables(model, (32, 32))
  with pytest.raises(UserError, match=r'VOLO built for image_size \(32, 32\) got input of shape \(1, 48, 32, 3\)'):
    jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 48, 32, 3), jnp.float32))


def unfold_reference(x, k, p, s):
  """torch's nn.Unfold, channels last, by loops: out[b, i, j, ki * k + kj] = x_padded[b, s*i + ki, s*j + kj]."""
  B, H, W, C = x.shape
  h, w = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
  xp = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
  out = np.zeros((B, h, w, k * k, C), x.dtype)
  for i in range(h):
    for j in range(w):
      for ki in range(k):
        for kj in range(k):
          out[:, i, j, ki * k + kj] = xp[:, s * i + ki, s * j + kj]
  return out


def fold_reference(y, hw, k, p, s):
  """torch's F.fold, channels last, by loops: every neighbour value added where it came from, the border dropped."""
  B, h, w, _, C = y.shape
  H, W = hw
  out = np.zeros((B, H + 2 * p, W + 2 * p, C), y.dtype)
  for i in range(h):
    for j in range(w):
      for ki in range(k):
        for kj in range(k):
          out[:, s * i + ki, s * j + kj] += y[:, i, j, ki * k + kj]
  return out[:, p:p + H, p:p + W]


@pytest.mark.parametrize('hw,k,p,s', [((7, 6), 3, 1, 2), ((6, 6), 3, 1, 2), ((5, 4), 3, 1, 1), ((8, 7), 5, 2, 2)])
def test_unfold_and_fold_match_loop_references(hw, k, p, s):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
  unfold = jax.jit(lambda a: volo.unfold(a, k, p, s))
  cols = np.asarray(unfold(x))
  np.testing.assert_allclose(cols, unfold_reference(x, k, p, s), rtol=0, atol=0)
  y = rng.normal(size=cols.shape).astype(np.float32)
  folded = np.asarray(jax.jit(lambda b: volo.fold(b, hw, k, p, s))(y))
  np.testing.assert_allclose(folded, fold_reference(y, hw, k, p, s), atol=1e-5)
  # Fold is unfold's adjoint: <unfold(x), y> = <x, fold(y)>, and it is what jax transposes unfold to.
  np.testing.assert_allclose(np.sum(cols.astype(np.float64) * y), np.sum(x.astype(np.float64) * folded), rtol=1e-5)
  transpose = jax.jit(jax.linear_transpose(unfold, jax.ShapeDtypeStruct(x.shape, jnp.float32)))
  np.testing.assert_allclose(transpose(y)[0], folded, atol=1e-5)


@pytest.mark.slow
def test_fold_and_unfold_keep_extra_axes_and_jit():
  """Outlook attention stacks the neighbours between heads and head_dim: (B, h, w, heads, K*K, head_dim)."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 4, 3, 5))
  cols = jax.jit(lambda a: volo.unfold(a, 3, 1, 2, axis=4))(x)
  assert cols.shape == (2, 3, 2, 3, 9, 5)
  flat = jax.jit(lambda a: volo.unfold(a, 3, 1, 2))(x.reshape(2, 6, 4, 15))  # (2, 3, 2, 9, 15)
  np.testing.assert_array_equal(jnp.moveaxis(cols, 4, 3).reshape(flat.shape), flat)
  back = jax.jit(lambda c: volo.fold(c, (6, 4), 3, 1, 2, axis=4))(cols)
  np.testing.assert_allclose(back.reshape(2, 6, 4, 15), jax.jit(lambda c: volo.fold(c, (6, 4), 3, 1, 2))(flat),
                             atol=1e-6)


def fixture(name, ext):
  return os.path.join(FIXTURES, f'{name}.{ext}')


def jit_apply(model, **kwargs):
  return jax.jit(lambda v, x: model.apply(v, x, **kwargs))


def converted(name, **extra):
  spec = MODELS[name]
  variables = from_timm(spec['model'], load_weights(fixture(name, 'safetensors')), **spec['model_kwargs'])
  return zoo.create_model(spec['model'], **spec['model_kwargs'], **extra), variables, np.load(fixture(name, 'npz'))


def nhwc(data):
  return data['input_nchw'].transpose(0, 2, 3, 1)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(MODELS))
def test_logits_match_timm(name):
  model, variables, data = converted(name)
  assert set(variables) == {'params', 'batch_stats'}
  assert count(variables['params']) == MODELS[name]['num_params']  # timm's count
  with jax.default_matmul_precision('float32'):
    apply = jit_apply(model)
    ours = np.asarray(apply(variables, nhwc(data)))
    assert ours.shape == data['logits'].shape and ours.dtype == np.float32
    assert np.max(np.abs(ours - data['logits'])) <= TOLERANCE
    assert np.max(np.abs(data['logits'][0] - data['logits'][1])) > 100 * TOLERANCE  # depends on the input
    if name == 'volo_l2111_e32_48':  # and on every weight: another mixing of the neighbours breaks parity
      attn = variables['params']['stage1_block1']['attn']['attn']
      attn['bias'] = np.roll(attn['bias'], 1)
      assert np.max(np.abs(apply(variables, nhwc(data)) - data['logits'])) > 100 * TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(MODELS))
def test_training_outputs_match_timm(name, monkeypatch):
  """Batch-statistics BN, the cls and aux heads, and MixToken with timm's box (forced on both sides)."""
  data = np.load(fixture(name, 'npz'))
  r0, r1, c0, c1 = (int(v) for v in data['train_box'])
  monkeypatch.setattr(volo, 'mix_token_box', lambda key, grid: ((r0, r1), (c0, c1)))
  for mix, tag in ((False, 'train'), (True, 'train_mix')):
    model, variables, _ = converted(name, mix_token=mix)
    with jax.default_matmul_precision('float32'):
      out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, rngs={'dropout': jax.random.key(0)},
                                                mutable=['batch_stats']))(variables, nhwc(data))
    np.testing.assert_allclose(out['logits'], data[f'{tag}_logits'], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(out['aux_logits'], data[f'{tag}_aux_logits'], atol=TOLERANCE, rtol=0)
    area = (r1 - r0) * (c1 - c0) if mix else 0
    assert float(out['mix_mask'].sum()) == area
    assert float(out['mix_lambda']) == pytest.approx(1 - area / out['mix_mask'].size)
  assert not np.allclose(data['train_logits'], data['train_mix_logits'], atol=100 * TOLERANCE)


def small_model(**overrides):
  return zoo.create_model('volo_d1', **{**SMALL, **overrides})


@pytest.fixture(scope='module')
def small():
  model = small_model()
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  return model, random_variables(model, (32, 32)), x


@pytest.mark.slow
def test_training_contract(small):
  model, variables, x = small
  step = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={'dropout': key}, mutable=['batch_stats']))
  masks = set()
  for seed in range(12):
    out, updates = step(variables, x, jax.random.key(seed))
    assert set(out) == {'logits', 'aux_logits', 'mix_mask', 'mix_lambda'}
    assert out['logits'].shape == (4, 6) and out['aux_logits'].shape == (4, 2, 2, 6)
    assert out['mix_mask'].shape == (2, 2) and out['mix_lambda'].shape == ()
    assert all(v.dtype == jnp.float32 for v in out.values())
    mask = np.asarray(out['mix_mask'])
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if mask.any():  # one axis-aligned box
      assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all() and mask.sum() == len(rows) * len(cols)
    assert float(out['mix_lambda']) == pytest.approx(1 - mask.mean())
    masks.add(mask.tobytes())
  assert len(masks) > 2  # the box is drawn from the 'dropout' rng
  assert set(updates) == {'batch_stats'}
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(updates['batch_stats']),
                                                     jax.tree.leaves(variables['batch_stats'])))
  np.testing.assert_array_equal(out['logits'], step(variables, x, jax.random.key(11))[0]['logits'])


@pytest.mark.slow
def test_mix_token_swaps_tokens_in_and_aux_logits_back(small, monkeypatch):
  """Tokens inside the box (2x on the 1/8 grid) come from x[::-1]; the aux logits there are swapped back."""
  model, variables, x = small
  monkeypatch.setattr(volo, 'mix_token_box', lambda key, grid: ((jnp.int32(1), jnp.int32(2)), (0, 2)))
  seen = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.module.name in ('patch_embed', 'stage1_block0', 'aux_head') and context.method_name == '__call__':
      seen[context.module.name] = (args[0], out)
    return out

  def run(variables, x):
    with nn.intercept_methods(record):
      out, _ = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
    return out, seen

  out, seen = jax.jit(run)(variables, x)
  embedded, mixed = seen['patch_embed'][1], seen['stage1_block0'][0]
  box = np.zeros((4, 4), bool)
  box[2:4, 0:4] = True
  np.testing.assert_array_equal(mixed, np.where(box[None, :, :, None], embedded[::-1], embedded))
  aux = np.asarray(seen['aux_head'][1]).reshape(4, 2, 2, 6)
  small_box = np.array([[False, False], [True, True]])
  np.testing.assert_array_equal(out['aux_logits'], np.where(small_box[None, :, :, None], aux[::-1], aux))
  np.testing.assert_array_equal(out['mix_mask'], small_box.astype(np.float32))
  assert float(out['mix_lambda']) == 0.5


@pytest.mark.slow
def test_no_mixing_without_mix_token_or_outside_training(small):
  model, variables, x = small
  plain = small_model(mix_token=False)
  out, _ = jit_apply(plain, train=True, mutable=['batch_stats'])(variables, x)  # no rng needed
  assert float(out['mix_lambda']) == 1.0 and not np.any(out['mix_mask'])
  assert out['aux_logits'].shape == (4, 2, 2, 6)


@pytest.fixture(scope='module')
def small_eval(small):
  """The small model's eval logits, with its head and aux_head outputs."""
  model, variables, x = small
  seen = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.module.name in ('head', 'aux_head'):
      seen[context.module.name] = out
    return out

  def run(variables, x):
    with nn.intercept_methods(record):
      return model.apply(variables, x), seen

  return jax.jit(run)(variables, x)


@pytest.mark.slow
def test_inference_is_head_plus_half_max_aux(small_eval):
  """eval logits = head(cls) + 0.5 * max over tokens of aux_head(tokens), with the running BN statistics."""
  logits, seen = small_eval
  assert logits.shape == (4, 6) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, seen['head'] + 0.5 * seen['aux_head'].max(axis=1), atol=1e-6)


@pytest.mark.slow
def test_drop_path_schedule_is_timms(small):
  """Linear over all blocks by index, rate * i / (n - 1); outlookers and class blocks get none."""
  model = small_model(drop_path_rate=0.3, mix_token=False)  # layers (1, 2, 1)
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, StochasticDepth):
      seen.setdefault(context.module.path[0], set()).add(context.module.rate)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    abstract_variables(model, (32, 32))
  assert {k: sorted(v) for k, v in seen.items()} == {
      'stage1_block0': [0.0], 'stage2_block0': [pytest.approx(0.1)], 'stage2_block1': [pytest.approx(0.2)],
      'stage3_block0': [pytest.approx(0.3)]}
  _, variables, x = small
  step = jax.jit(lambda key: model.apply(variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])[0])
  assert not np.allclose(step(jax.random.key(2))['logits'], step(jax.random.key(3))['logits'])


@pytest.mark.slow
def test_bn_axis_name_gives_global_batch_statistics(small):
  """bn_axis_name='batch': the stem's BN averages over the mapped axis, as over one global batch."""
  _, variables, x = small
  local = small_model(mix_token=False)
  shared = small_model(mix_token=False, bn_axis_name='batch')
  _, whole = jit_apply(local, train=True, mutable=['batch_stats'])(variables, x)
  split = jax.jit(jax.vmap(lambda xs: shared.apply(variables, xs, train=True, mutable=['batch_stats'])[1],
                           axis_name='batch'))(x.reshape(2, 2, 32, 32, 3))
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split)):
    np.testing.assert_allclose(b[0], a, rtol=1e-4, atol=1e-5)
  assert jax.eval_shape(shared.apply, variables, x).shape == (4, 6)  # eval needs no axis


def test_resize_pos_embed_fits_a_larger_model():
  """volo_d1 at 224, its position embedding resized, has exactly volo_d1 at 384's variables."""
  at224 = abstract_variables(zoo.create_model('volo_d1'), (224, 224))
  at384 = abstract_variables(zoo.create_model('volo_d1', image_size=384), (384, 384))
  resized = jax.eval_shape(lambda v: volo.resize_pos_embed(v, 384), at224)
  assert jax.tree.structure(resized) == jax.tree.structure(at384)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), resized) == jax.tree.map(lambda a: (a.shape, a.dtype), at384)
  params = jax.eval_shape(lambda p: volo.resize_pos_embed(p, (448, 384)), at224['params'])  # params alone too
  assert params['pos_embed'].shape == (1, 28, 24, 384)


@pytest.mark.slow
def test_resize_pos_embed_numbers(small):
  model, variables, x = small
  same = volo.resize_pos_embed(variables, 32)
  np.testing.assert_allclose(same['params']['pos_embed'], variables['params']['pos_embed'], atol=1e-6)
  bigger = volo.resize_pos_embed(variables, 64)
  pos = bigger['params']['pos_embed']
  assert pos.shape == (1, 4, 4, 24)
  np.testing.assert_allclose(pos.mean(), variables['params']['pos_embed'].mean(), atol=0.02)
  out = jit_apply(small_model(image_size=64))(bigger, jax.random.normal(jax.random.key(0), (2, 64, 64, 3)))
  assert out.shape == (2, 6) and np.all(np.isfinite(out))
  with pytest.raises(UserError, match='multiples of 16'):
    volo.resize_pos_embed(variables, 100)


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_with_float32_params(small, small_eval):
  """bf16 logits within 2% of float32's (0.45% measured); one block left out (its parameters zeroed) moves them by
  14% to 115%."""
  _, variables, x = small
  model = small_model(dtype='bfloat16')
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(abstract_variables(model, (32, 32))))
  assert 'bf16' in jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).as_text()
  out, f32 = jit_apply(model)(variables, x), small_eval[0]
  assert out.dtype == jnp.float32 and float(jnp.linalg.norm(out - f32) / jnp.linalg.norm(f32)) < 2e-2
  train = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={'dropout': jax.random.key(0)},
                                                  mutable=['batch_stats'])[0], variables, x)
  assert all(v.dtype == jnp.float32 for v in train.values())


@pytest.fixture(scope='module')
def full_size_shapes():
  with open(fixture('volo_full_size_shapes', 'json')) as f:
    return json.load(f)


@pytest.mark.slow
def test_full_size_timm_layouts(full_size_shapes):
  """timm's volo_d1_224 state dict fits volo_d1 exactly; volo_d1_384's only at image_size=384, and is recognised."""
  d1 = {k: np.zeros(s, np.float32) for k, s in full_size_shapes['volo_d1_224'].items()}
  variables = from_timm('volo_d1', d1)
  assert count(variables['params']) == TIMM_PARAMS['volo_d1']
  d1_384 = {k: np.zeros(s, np.float32) for k, s in full_size_shapes['volo_d1_384'].items()}
  with pytest.raises(ConversionError, match=r'(?s)1 with the wrong shape.*pos_embed: expected \(1, 14, 14, 384\), '
                                            r'got \(1, 24, 24, 384\).*looks like volo_d1\(image_size=384, '
                                            r'num_classes=1000\)'):
    from_timm('volo_d1', d1_384)
  assert from_timm('volo_d1', d1_384, image_size=384)['params']['pos_embed'].shape == (1, 24, 24, 384)
  del d1['post_network.1.mlp.fc2.bias']
  with pytest.raises(ConversionError, match=r'missing: post_network\.1\.mlp\.fc2\.bias'):
    from_timm('volo_d1', d1)


def test_guess_names_a_non_published_member():
  name = 'volo_l2111_e32_48'
  weights = load_weights(fixture(name, 'safetensors'))
  with pytest.raises(ConversionError, match=r'looks like volo_d1\(layers=\(2, 1, 1, 1\), embed_dims=\(32, 48, 48, '
                                            r'48\), mlp_ratio=3.0, stem_hidden_dim=16, image_size=\(80, 64\), '
                                            r'num_classes=10\)'):
    from_timm('volo_d1', weights)


@pytest.mark.slow
def test_remat_recomputes_the_blocks_with_the_same_gradients(small):
  """`remat=True` (flax nn.remat around every block) changes no variable and no gradient, MixToken and stochastic
  depth included: the recomputation draws the same random numbers."""
  model, variables, x = small

  def grad(model):
    def loss(params):
      out, _ = model.apply({**variables, 'params': params}, x, train=True, rngs={'dropout': jax.random.key(4)},
                           mutable=['batch_stats'])
      return jnp.sum(out['logits'] ** 2) + jnp.sum(out['aux_logits'] ** 2)
    return jax.jit(jax.grad(loss))(variables['params'])

  rematted = model.clone(remat=True, drop_path_rate=0.3)
  assert jax.tree.structure(abstract_variables(rematted, (32, 32))) == jax.tree.structure(variables)
  plain, remat = grad(model.clone(drop_path_rate=0.3)), grad(rematted)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):  # float32 rounding of a recomputed forward
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(a))))
