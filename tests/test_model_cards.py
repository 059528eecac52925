"""Model cards (zoo.model_card): the facts of each registered model, checked against timm's data configs of the
weights they name, against the recipes they point to, and read by conversion and fine-tuning."""
import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo import finetune
from zoo.errors import UserError

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_resnet_rs_and_volo_cards_state_timms_data_configs():
  """Facts of timm's default_cfgs (timm/models/resnet.py, volo.py): resnetrs50.tf_in1k is evaluated at 160 with a
  0.91 crop, resnetrs101 at 192 / 0.94, volo_d1_224.sail_in1k at 224 / 0.96; bicubic, ImageNet mean and std."""
  for name, size, crop, timm_name, heads in [('resnetrs50', 160, 0.91, 'resnetrs50.tf_in1k', ('head',)),
                                             ('resnetrs101', 192, 0.94, 'resnetrs101.tf_in1k', ('head',)),
                                             ('volo_d1', 224, 0.96, 'volo_d1_224.sail_in1k', ('head', 'aux_head'))]:
    card = zoo.model_card(name)
    assert (card.task, card.input_size, card.crop_pct, card.interpolation) == ('classification', size, crop, 'bicubic')
    assert (card.mean, card.std) == IMAGENET
    assert (card.timm_name, card.classifier) == (timm_name, heads)
  assert zoo.model_card('resnetrs50').recipe == 'configs/resnet_rs.py:50-160'
  assert zoo.model_card('volo_d3').recipe == 'configs/volo.py:d3-224'


def test_models_without_timm_weights_or_classifier():
  for name, task in [('dncnn', 'denoising'), ('simplecnn', 'denoising'), ('pdnet', 'reconstruction'),
                     ('faceguard', 'watermarking'), ('face_autoencoder', 'autoencoding')]:
    card = zoo.model_card(name)
    assert (card.task, card.classifier, card.timm_name, card.mean, card.crop_pct) == (task, (), None, None, None)
    assert not zoo.convert.convertible(name)
  with pytest.raises(UserError, match="no timm weights mapping for 'dncnn'; convertible models: resnetrs101, "):
    zoo.convert.from_timm('dncnn', {})


def test_unknown_names_and_frozen_cards():
  with pytest.raises(UserError, match=r"Unknown model 'resnetrs51'\. Did you mean resnetrs50"):
    zoo.model_card('resnetrs51')
  with pytest.raises(dataclasses.FrozenInstanceError):
    zoo.model_card('resnetrs50').input_size = 224


@pytest.mark.parametrize('name', zoo.list_models())
def test_the_recipe_trains_the_model_at_its_size(name):
  card = zoo.model_card(name)
  path, _, arg = card.recipe.partition(':')
  assert path.startswith('configs/') and path.endswith('.py')
  module = importlib.import_module(path[:-len('.py')].replace('/', '.'))
  config = module.get_config(arg) if arg else module.get_config()
  assert (config.model, config.task) == (name, card.task)
  size = config.input.patch_size if card.task == 'denoising' else config.input.image_size
  assert size == card.input_size


@pytest.mark.parametrize('name', ['resnetrs50', 'volo_d1'])
def test_the_classifier_names_the_heads_that_num_classes_shapes(name):
  shapes = {}
  for classes in (10, 12):
    model = zoo.create_model(name, num_classes=classes)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']
    shapes[classes] = {k: jax.tree.leaves(v) for k, v in params.items()}
  differ = {k for k in shapes[10] if [a.shape for a in shapes[10][k]] != [a.shape for a in shapes[12][k]]}
  assert differ == set(zoo.model_card(name).classifier)


def test_fine_tuning_reinitialises_the_cards_heads_only():
  source = {'head': {'bias': np.ones(10, np.float32)}, 'norm': {'scale': np.ones(4, np.float32)}}
  target = {'head': {'bias': np.zeros(64, np.float32)}, 'norm': {'scale': np.zeros(4, np.float32)}}
  out = finetune.adapt(source, target, zoo.model_card('resnetrs50').classifier)
  np.testing.assert_array_equal(out['head']['bias'], target['head']['bias'])
  np.testing.assert_array_equal(out['norm']['scale'], source['norm']['scale'])
  with pytest.raises(UserError, match=r'params of another shape in the checkpoint: head/bias \(10,\) -> \(64,\)'):
    finetune.adapt(source, target, zoo.model_card('dncnn').classifier)
