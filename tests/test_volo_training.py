"""VOLO training: the token-labelling loss, dense targets through the input pipeline, configs/volo.py (recipe,
schedule, weight decay), tiny VOLOs trained by the trainer, and fine-tuning from another run (`init_from`)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

import zoo
from configs import volo as volo_config
from tests.helpers import apply_overrides, load_state, logged_scalars, run_cli
from zoo import finetune, trainer
from zoo.data import pipeline
from zoo.errors import DatasetError, UserError
from zoo.tasks import get_task
from zoo.tasks.base import weight_decay_mask
from zoo.tasks.classification import smoothed_cross_entropy, token_labelling_loss

# A VOLO small enough to compile in seconds: one outlooker, one transformer block, one class-attention block.
TINY = dict(layers=(1, 1), embed_dims=(16, 24), num_heads=(2, 2), stem_hidden_dim=8, num_class_blocks=1)


def tiny_volo_config(data_dir, **overrides):
  """configs/volo.py:d1-224 on mnist5k with a tiny VOLO at 32x32 (2x2 tokens): two steps of the full recipe."""
  c = volo_config.get_config('d1-224')
  c.model_kwargs.update(TINY)
  c.model_kwargs.dtype = 'float32'
  c.data_dir = data_dir
  c.dataset = 'mnist5k'
  # Four eval steps: a fast test, and few steps in flight at once (63 asynchronous eval steps on 8 simulated CPU
  # devices occasionally stalled in XLA's all-gather rendezvous).
  c.train_split, c.eval_split = 'train', 'test[:64]'
  c.input.image_size = 32  # also the model's image_size (a reference)
  c.input.channels = 1  # the stem's first convolution takes any channel count
  c.input.crop_pct = 1.0
  c.input.mean, c.input.std = (0.1307 * 255,), (0.3081 * 255,)
  c.batch_size = 16
  c.num_train_steps = 2
  c.log_every_steps = 1
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  return apply_overrides(c, overrides)


def train_losses(workdir):
  """The train/loss scalars that the trainer left in the workdir's TensorBoard events, in step order."""
  return [loss for _, loss in sorted(logged_scalars(workdir, 'train/loss').items())]


# ----------------------------------------------------------------------------------------------------------------------
# The loss.


@pytest.mark.slow
def test_smoothed_cross_entropy_equals_optax():
  logits = jax.random.normal(jax.random.key(0), (3, 4, 7))
  labels = jax.random.randint(jax.random.key(1), (3, 4), 0, 7)
  expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 7), 0.1))
  np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, 0.1), expected, rtol=1e-6)


def _ce(logits, target):
  return -np.sum(target * jax.nn.log_softmax(logits), axis=-1)


def _smooth(labels, classes, eps):
  return np.eye(classes)[labels] * (1 - eps) + eps / classes


@pytest.mark.slow
@pytest.mark.parametrize('dense', [False, True])
def test_token_labelling_loss_by_hand(dense):
  """CE(cls, lam * y + (1 - lam) * y[::-1]) + 0.5 * mean over tokens of CE(aux, the token's own target)."""
  b, h, w, c, eps, lam = 4, 2, 3, 5, 0.1, 0.75
  keys = jax.random.split(jax.random.key(0), 4)
  logits = np.asarray(jax.random.normal(keys[0], (b, c)))
  aux = np.asarray(jax.random.normal(keys[1], (b, h, w, c)))
  labels = np.asarray(jax.random.randint(keys[2], (b,), 0, c))
  tokens = np.asarray(jax.random.randint(keys[3], (b, h, w), 0, c)) if dense else None
  outputs = {'logits': jnp.asarray(logits), 'aux_logits': jnp.asarray(aux),
             'mix_mask': jnp.zeros((h, w)), 'mix_lambda': jnp.float32(lam)}
  y = _smooth(labels, c, eps)
  cls = _ce(logits, lam * y + (1 - lam) * y[::-1]).mean()
  token_targets = _smooth(tokens, c, eps) if dense else np.broadcast_to(y[:, None, None], (b, h, w, c))
  expected = cls + 0.5 * _ce(aux, token_targets).mean()
  loss = token_labelling_loss(outputs, jnp.asarray(labels), eps, None if tokens is None else jnp.asarray(tokens))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_token_labels_off_the_token_grid_are_refused():
  outputs = {'logits': jnp.zeros((2, 3)), 'aux_logits': jnp.zeros((2, 2, 2, 3)), 'mix_lambda': jnp.float32(1.0)}
  with pytest.raises(UserError, match=r"token grid.*\(2, 2, 2, 3\)"):
    token_labelling_loss(outputs, jnp.zeros(2, jnp.int32), 0.1, jnp.zeros((2, 3, 3), jnp.int32))


@pytest.mark.slow
def test_task_loss_is_token_labelling_of_the_models_outputs(tfds_dir):
  """Through the task: the model's MixToken batch, its lambda and the loss; metrics see the class logits."""
  task = get_task(tiny_volo_config(tfds_dir))
  task.model = task.model.clone(bn_axis_name=None)  # called outside pmap: no 'batch' axis
  variables = jax.jit(functools.partial(task.model.init, train=False))(jax.random.key(0), task.init_inputs())
  batch = next(task.train_batches(0))
  rng = jax.random.key(3)
  loss, (_, metric_inputs) = jax.jit(task.train_loss)(variables['params'], variables['batch_stats'], batch, rng)
  apply = jax.jit(functools.partial(task.model.apply, train=True, mutable=['batch_stats']))
  erase_rng, dropout_rng = jax.random.split(rng)  # the recipe erases: the task takes its noise's key first
  outputs, _ = apply(variables, task.images(batch, erase_rng), rngs={'dropout': dropout_rng})
  assert 0.0 < float(outputs['mix_lambda']) < 1.0  # this draw mixes
  np.testing.assert_allclose(loss, token_labelling_loss(outputs, batch['label'], 0.1), rtol=1e-5)
  # The same computation compiled as two programs (the normalisation fused differently): equal to float32 rounding.
  np.testing.assert_allclose(metric_inputs['logits'], outputs['logits'], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# configs/volo.py.


@pytest.mark.parametrize('variant,res', sorted(volo_config.PUBLISHED))
def test_config_carries_the_recipe(variant, res):
  c = volo_config.get_config(f'{variant}-{res}')
  lr, drop_path = {'d1': (1.6e-3, 0.1), 'd2': (1e-3, 0.2), 'd3': (1e-3, 0.5), 'd4': (1e-3, 0.5),
                   'd5': (1e-3, 0.75)}[variant]
  assert c.model == f'volo_{variant}' and c.input.image_size == c.model_kwargs.image_size == res
  assert c.model_kwargs.drop_path_rate == drop_path and c.model_kwargs.dtype == 'bfloat16'
  assert (c.optimizer, c.label_smoothing, c.ema_decay) == ('adamw', 0.1, 0.0)
  assert (c.input.randaugment_layers, c.input.randaugment_magnitude, c.input.randaugment_magnitude_std) == (2, 9, 0.5)
  assert c.input.random_erasing == 0.25 and c.dataset == 'imagenet2012'
  if res == 224:
    assert (c.batch_size, c.lr_base_batch, c.learning_rate, c.end_learning_rate) == (1024, 1024, lr, 1e-5)
    assert (c.weight_decay, c.warmup_epochs, c.num_epochs, c.cooldown_epochs) == (0.05, 20, 310, 10)
  else:  # the README's fine-tuning
    assert (c.learning_rate, c.end_learning_rate, c.weight_decay, c.warmup_epochs) == (8e-6, 4e-6, 1e-8, 5)
    assert (c.num_epochs, c.cooldown_epochs, c.lr_base_batch) == (40, 10, c.batch_size)
  zoo.create_model(c.model, **c.model_kwargs)  # a valid model


def test_model_image_size_follows_the_input_size():
  c = volo_config.get_config('d1-224')
  c.input.image_size = 384
  assert c.to_dict()['model_kwargs']['image_size'] == 384


@pytest.mark.parametrize('arg,match', [('d6-224', 'not one of d1, d2'), ('d1-230', 'multiple of 16'),
                                       ('d1', 'VARIANT-RES'), ('d1-x', 'VARIANT-RES'), ('d1-0', 'multiple of 16')])
def test_bad_arguments_name_the_choices(arg, match):
  with pytest.raises(ValueError, match=match) as e:
    volo_config.get_config(arg)
  assert 'd5-512' in str(e.value)


def test_schedule_peaks_at_the_papers_lr_and_cools_down():
  """Batch 1024 at lr_base_batch 1024: peak 1.6e-3 after 20 epochs, 1e-5 from epoch 300 to 310."""
  c = volo_config.get_config('d1-224')
  schedule = trainer.learning_rate_schedule(c, steps_per_epoch=10, total_steps=3100)
  np.testing.assert_allclose([schedule(0), schedule(100), schedule(200)], [0.0, 0.8e-3, 1.6e-3], rtol=1e-5)
  np.testing.assert_allclose(schedule(1600), (1.6e-3 + 1e-5) / 2, rtol=1e-4)  # half way through the cosine
  np.testing.assert_allclose([schedule(3000), schedule(3050), schedule(3100)], [1e-5] * 3, rtol=1e-4)
  c.batch_size = 512  # linear scaling from the recipe's batch
  np.testing.assert_allclose(trainer.learning_rate_schedule(c, 10, 3100)(200), 0.8e-3, rtol=1e-5)


def test_weight_decay_is_timms_rule_for_volo():
  """timm decays a VOLO tensor unless it is 1-D (norms, biases) or pos_embed / cls_token; the mask says the same."""
  params = jax.eval_shape(zoo.create_model('volo_d1').init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']

  def by_name(tree):
    return {'/'.join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(tree)}

  decay, leaves = by_name(weight_decay_mask(params)), by_name(params)
  for name, leaf in leaves.items():
    assert decay[name] == (leaf.ndim > 1 and name not in ('pos_embed', 'cls_token')), name
  assert not decay['pos_embed'] and not decay['cls_token'] and not decay['norm/scale']
  assert decay['stage1_block0/attn/v/kernel'] and decay['patch_embed/conv1/kernel'] and not decay['head/bias']


# ----------------------------------------------------------------------------------------------------------------------
# Dense targets through the pipeline.


class TokenGrid(tfds.core.GeneratorBasedBuilder):
  """64x64 PNGs whose red channel is 4 * row and green 4 * column, with 'token_labels' the 8x8 map of region
  indices (8 * row // 8 + column // 8): where a token looks can be read off its pixels."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(64, 64, 3), encoding_format='png'),
        'label': tfds.features.ClassLabel(num_classes=64),
        'token_labels': tfds.features.Tensor(shape=(8, 8), dtype=np.int32)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(32), 'test': self._generate_examples(8)}

  def _generate_examples(self, n):
    rows, cols = np.mgrid[0:64, 0:64]
    image = np.stack([4 * rows, 4 * cols, np.zeros_like(rows)], -1).astype(np.uint8)
    region_rows, region_cols = np.mgrid[0:8, 0:8]
    regions = (8 * region_rows + region_cols).astype(np.int32)
    for i in range(n):
      yield i, {'image': image, 'label': i % 64, 'token_labels': regions}


@pytest.fixture(scope='module')
def token_grid_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('token_grid'))
  TokenGrid(data_dir=path, file_format='array_record').download_and_prepare()
  return path


def token_grid_config(data_dir, **overrides):
  c = tiny_volo_config(data_dir, dataset='token_grid', eval_split='test', **overrides)
  c.input.channels = 3
  c.input.mean, c.input.std = (0.0,) * 3, (1.0,) * 3
  c.input.token_labels = True
  return c


def test_dense_token_labels_follow_the_crop_and_the_flip(token_grid_dir):
  """Every token's label is the region under its centre, read back from the ramps of the augmented image."""
  c = token_grid_config(token_grid_dir, batch_size=32)
  c.input.image_size = 64  # a 4x4 token grid
  c.input.area_range = (0.2, 1.0)
  c.input.randaugment_layers, c.input.random_erasing = 0, 0.0  # keep the ramps readable
  batch = pipeline.train_dataset(get_task(c).data, c, seed=1, token_grid=(4, 4))[0]
  assert batch['token_labels'].shape == (32, 4, 4) and batch['token_labels'].dtype == np.int32
  centre = batch['image'].reshape(32, 4, 16, 4, 16, 3)[:, :, 7:9, :, 7:9].mean(axis=(2, 4))  # value at 16i + 8
  source = centre[..., :2] / 4 + 0.5  # source (row, column) under each token's centre
  clear = np.all(np.abs(source / 8 - np.round(source / 8)) > 0.03, axis=-1)  # not on a region border
  expected = (source[..., 0] // 8) * 8 + source[..., 1] // 8
  assert clear.mean() > 0.7
  np.testing.assert_array_equal(batch['token_labels'][clear], expected[clear])
  flipped = batch['image'][:, 0, -1, 1] < batch['image'][:, 0, 0, 1]
  assert 0 < flipped.sum() < 32  # both orientations were drawn
  assert len({tuple(t.ravel()) for t in batch['token_labels']}) > 16  # and many crops


def test_token_labels_need_a_dataset_and_a_model_that_have_them(tfds_dir, token_grid_dir):
  with pytest.raises(DatasetError, match="no 'token_labels' feature"):
    get_task(tiny_volo_config(tfds_dir, **{'input.token_labels': True})).check_data()
  c = token_grid_config(token_grid_dir)
  c.model, c.model_kwargs = 'resnetrs50', {'stage_depths': (1, 1, 1, 1), 'width_multiplier': 0.125}
  with pytest.raises(UserError, match='needs a token-labelling model'):
    get_task(c).check_data()


# ----------------------------------------------------------------------------------------------------------------------
# Training through the trainer.


class Stripes(tfds.core.GeneratorBasedBuilder):
  """32x32 images of noisy stripes, horizontal (label 0) or vertical (1), of random period and phase: crops, flips and
  RandAugment keep the label, and a tiny model learns it in a few steps."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(32, 32, 3), encoding_format='png'),
        'label': tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(64, seed=0), 'test': self._generate_examples(64, seed=1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    rows = np.arange(32)[:, None] + np.zeros((1, 32))
    for i in range(n):
      period, phase = rng.integers(4, 9), rng.integers(0, 8)
      wave = (((rows + phase) // (period // 2)) % 2) * 200 + 28
      image = wave if i % 2 == 0 else wave.T
      image = np.clip(image[..., None] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
      yield i, {'image': image, 'label': i % 2}


@pytest.mark.slow
def test_tiny_volo_learns_with_the_recipe(tmp_path):
  """The d1-224 recipe (AdamW, MixToken, token labelling, RandAugment, random erasing, drop path, cosine) at a peak
  learning rate of 3e-3 and without its warm-up and cooldown epochs (an epoch is 4 steps here): after 30 steps the
  tiny VOLO tells the held-out stripes apart, 95% right and a loss of 0.49 (measured; chance: 50% and ln 2 = 0.69)."""
  data_dir = str(tmp_path / 'tfds')
  Stripes(data_dir=data_dir, file_format='array_record').download_and_prepare()
  c = tiny_volo_config(data_dir, dataset='stripes', eval_split='test', num_train_steps=30, learning_rate=3e-3,
                       lr_base_batch=16, warmup_epochs=0.0, cooldown_epochs=0.0)
  c.input.channels, c.input.mean, c.input.std = 3, (127.5,) * 3, (64.0,) * 3
  workdir = str(tmp_path / 'w')
  metrics = trainer.train_and_evaluate(c, workdir)
  assert metrics['top1'] > 0.8 and metrics['loss'] < 0.6, metrics
  losses = train_losses(workdir)
  assert len(losses) == 30 and all(math.isfinite(v) for v in losses), losses


@pytest.mark.slow
def test_tiny_volo_trains_with_dense_token_labels(token_grid_dir, tmp_path):
  workdir = str(tmp_path / 'w')
  trainer.train_and_evaluate(token_grid_config(token_grid_dir), workdir)
  losses = train_losses(workdir)
  assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses), losses


# ----------------------------------------------------------------------------------------------------------------------
# Fine-tuning from another run.


def test_adapt_resizes_pos_embed_reinitialises_heads_and_refuses_other_misfits():
  rng = np.random.default_rng(0)
  source = {'pos_embed': rng.normal(size=(1, 2, 2, 4)).astype(np.float32),
            'block': {'kernel': rng.normal(size=(4, 4)).astype(np.float32)},
            'head': {'kernel': np.ones((4, 10), np.float32), 'bias': np.ones(10, np.float32)}}
  target = {'pos_embed': np.zeros((1, 3, 3, 4), np.float32), 'block': {'kernel': np.zeros((4, 4), np.float32)},
            'head': {'kernel': np.full((4, 64), 2.0, np.float32), 'bias': np.zeros(64, np.float32)}}
  out = finetune.adapt(source, target, ('head',))
  np.testing.assert_allclose(out['pos_embed'], jax.image.resize(source['pos_embed'], (1, 3, 3, 4), 'bicubic'))
  np.testing.assert_array_equal(out['block']['kernel'], source['block']['kernel'])
  np.testing.assert_array_equal(out['head']['kernel'], target['head']['kernel'])  # the new model's init
  with pytest.raises(UserError, match=r'block/kernel \(4, 4\) -> \(4, 5\)'):
    finetune.adapt(source, {**target, 'block': {'kernel': np.zeros((4, 5), np.float32)}}, ('head',))
  with pytest.raises(UserError, match=r'missing \[extra/kernel\], unexpected \[block/kernel\]'):
    finetune.adapt(source, {**{k: v for k, v in target.items() if k != 'block'}, 'extra': {'kernel': np.zeros(1)}},
                   ('head',))


CLI_CONFIG = '''from tests.test_volo_training import tiny_volo_config


def get_config():
  return tiny_volo_config({data_dir!r})
'''


@pytest.mark.slow
def test_init_from_fine_tunes_at_a_higher_resolution_through_train_py(tfds_dir, tmp_path):
  """Train at 32 (2x2 tokens), then `train.py --config.init_from=` at 48 (3x3): the new run starts from the source's
  EMA weights with the position embedding resized bicubically (learning rate 0 keeps them through its one step)."""
  source = str(tmp_path / 'at32')
  trainer.train_and_evaluate(tiny_volo_config(tfds_dir, num_train_steps=1, ema_decay=0.5), source)
  config_file = tmp_path / 'tiny_volo.py'
  config_file.write_text(CLI_CONFIG.format(data_dir=tfds_dir))
  target = str(tmp_path / 'at48')
  rc, _, err = run_cli('train.py', f'--config={config_file}', f'--workdir={target}', f'--config.init_from={source}',
                       '--config.input.image_size=48', '--config.learning_rate=0.0', '--config.num_train_steps=1',
                       devices=2)
  assert rc == 0, err[-3000:]
  assert 'pos_embed resized from (1, 2, 2, 24) to (1, 3, 3, 24)' in err
  source_state = load_state(source)
  ema, raw = source_state['ema_params'], source_state['params']
  tuned = load_state(target)['params']
  np.testing.assert_allclose(tuned['pos_embed'], jax.image.resize(ema['pos_embed'], (1, 3, 3, 24), 'bicubic'),
                             atol=1e-6)
  rest = [k for k in tuned if k != 'pos_embed']
  for k in rest:
    jax.tree.map(np.testing.assert_array_equal, tuned[k], ema[k])
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(raw)))
