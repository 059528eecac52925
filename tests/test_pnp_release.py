"""The plug-and-play paper's released denoisers read by zoo.convert.pnp_denoisers: small files in the paper's layout
and torch's legacy format (tools/make_pnp_fixtures.py) give torch's outputs; the released files themselves (with
$ZOO_PNP_DATA, the paper's data with its denoisers in pretrained/) give the outputs torch computed from them."""
import os

import numpy as np
import pytest

import zoo
from tests.helpers import ROOT
from zoo.convert import load_weights, pnp_denoisers
from zoo.errors import UserError

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'pnp')
PNP_DATA = os.environ.get('ZOO_PNP_DATA')


def denoise(model, variables, x):
  """x [H, W] -> D(x) = x - N(x), the zoo's denoiser."""
  return np.asarray(model.apply(variables, x[None, :, :, None], train=False))[0, :, :, 0]


@pytest.mark.parametrize('name, model, kwargs, description', [
    ('simplecnn', 'simplecnn', {'depth': 4, 'features': 16, 'batch_norm': False}, 'SimpleCNN (4 layers)'),
    ('realsn_simplecnn', 'simplecnn', {'depth': 4, 'features': 16, 'batch_norm': False},
     'RealSN-SimpleCNN (4 layers)'),
    ('dncnn', 'dncnn', {'depth': 5, 'features': 16, 'batch_norm': True}, 'DnCNN (5 layers, BN)'),
])
def test_the_papers_layout_gives_torchs_outputs(name, model, kwargs, description):
  """Legacy-format files of the paper's architecture (RealSN buffers, BatchNorm statistics, `module.` prefix) give
  torch's x - net(x) in evaluation mode to 1e-5."""
  state_dict = load_weights(os.path.join(FIXTURES, f'{name}.pth'))
  assert pnp_denoisers.read(state_dict)[:2] == (model, kwargs)
  network, variables, described = pnp_denoisers.load(os.path.join(FIXTURES, f'{name}.pth'))
  assert described == description
  outputs = np.load(os.path.join(FIXTURES, 'outputs.npz'))
  ours = denoise(network, variables, outputs['input'][0, 0])
  assert np.abs(ours - outputs[name][0, 0]).max() < 1e-5


def test_weights_of_another_kind_are_one_line(tmp_path):
  classifier = os.path.join(ROOT, 'tests', 'fixtures', 'timm', 'rs_d1111_w0125.pth')
  with pytest.raises(UserError, match=r'is no denoiser of the plug-and-play paper \(keys dncnn.N.weight ...\): it '
                                      r'holds conv1.0.weight'):
    pnp_denoisers.load(classifier)
  state_dict = load_weights(os.path.join(FIXTURES, 'dncnn.pth'))
  del state_dict['dncnn.6.running_mean']  # one BatchNorm without statistics: not the paper's DnCNN
  with pytest.raises(UserError, match='is not one after each inner convolution'):
    pnp_denoisers.read(state_dict, 'f.pth')


@pytest.mark.skipif(not PNP_DATA, reason='set ZOO_PNP_DATA to the plug-and-play paper\'s data')
def test_the_released_denoisers_give_torchs_outputs():
  """Each released file (SimpleCNN, RealSN-SimpleCNN, DnCNN at sigma 15 and 40) on a noisy 64x64 crop of Set12's
  first image: the noise torch's model estimates (tools/make_pnp_fixtures.py --pnp_data) to 2e-5."""
  from PIL import Image
  expected = np.load(os.path.join(FIXTURES, 'released.npz'))
  image = np.asarray(Image.open(os.path.join(PNP_DATA, 'Set12', '01.png')).convert('L'), np.float32)[:64, :64] / 255
  for name in ('SimpleCNN_noise15', 'SimpleCNN_noise40', 'RealSN_SimpleCNN_noise15', 'RealSN_SimpleCNN_noise40',
               'DnCNN_noise15', 'DnCNN_noise40'):
    network, variables, _ = pnp_denoisers.load(os.path.join(PNP_DATA, 'pretrained', f'{name}.pth'))
    sigma = int(name.rsplit('noise', 1)[1])
    noisy = image + np.random.default_rng(sigma).normal(0, sigma / 255, image.shape).astype(np.float32)
    noise = noisy - denoise(network, variables, noisy)
    assert np.abs(noise - expected[name]).max() < 2e-5, name
