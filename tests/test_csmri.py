"""zoo.inverse.csmri follows the plug-and-play paper's CS-MRI scripts: against a numpy transcript of
pnp_admm_csmri.py / pnp_fbs_csmri.py (unnormalised FFTs, float64) on a synthetic case with a small denoiser in the
paper's layout; and, with $ZOO_PNP_DATA, the command's JSON line on the paper's Brain with a released denoiser."""
import json
import os
import shutil

import numpy as np
import pytest

from tests.helpers import ROOT, run_cli
from zoo.convert import pnp_denoisers
from zoo.errors import UserError
from zoo.inverse import csmri, pnp, trained

PNP_DATA = os.environ.get('ZOO_PNP_DATA')
SIGMA = 15


def paper_denoise(network, variables, x):
  """The scripts' denoising step on a float64 image: stretch to [0, 1], scale by 1 + sigma / 510 about 0.5,
  x - net(x), and back."""
  lo, hi = x.min(), x.max()
  scale = 1.0 + SIGMA / 255.0 / 2.0
  shift = (1 - scale) / 2.0
  t = (x - lo) / (hi - lo) * scale + shift
  t = np.asarray(network.apply(variables, t[None, :, :, None].astype(np.float32), train=False))[0, :, :, 0]
  return ((t.astype(np.float64) - shift) / scale) * (hi - lo) + lo


def paper_admm(denoise, image, mask, noises, alpha, iterations):
  y = np.fft.fft2(image) * mask + noises
  sampled = np.nonzero(mask)
  x = np.abs(np.fft.ifft2(y))
  u = np.zeros_like(x)
  for _ in range(iterations):
    vf = np.fft.fft2(x + u)
    weight = 1.0 / 2.0 / alpha
    vf[sampled] = (weight * vf[sampled] + y[sampled]) / (1.0 + weight)
    v = np.real(np.fft.ifft2(vf))
    x_new = denoise(2 * v - x - u)
    u = u + x - v
    x = x_new
  return x


def paper_fbs(denoise, image, mask, noises, alpha, iterations):
  y = np.fft.fft2(image) * mask + noises
  sampled = np.nonzero(mask)
  x = np.fft.ifft2(y)
  for _ in range(iterations):
    residual = np.fft.fft2(x) * mask
    residual[sampled] -= y[sampled]
    x = np.abs(x - alpha * np.fft.ifft2(residual))
    out = x.copy()
    x = denoise(x)
  return out


@pytest.mark.parametrize('solver, reference', [('admm', paper_admm), ('fbs', paper_fbs)])
def test_the_solvers_are_the_papers_scripts(solver, reference):
  """12 iterations on a 48x48 smooth image, a random 30% mask and the scripts' noise convention: the same iterate
  as the transcript to 1e-4 (float32 against float64)."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:48, :48] / 48
  image = 0.5 + 0.4 * np.sin(3 * xx) * np.cos(2 * yy)
  mask = (rng.random((48, 48)) < 0.3).astype(np.float64)
  mask[0, 0] = 1.0
  noises = 3.0 * (rng.normal(size=(48, 48)) + 1j * rng.normal(size=(48, 48))) / np.sqrt(2)
  network, variables, _ = pnp_denoisers.load(os.path.join(ROOT, 'tests', 'fixtures', 'pnp', 'simplecnn.pth'))
  expected = reference(lambda x: paper_denoise(network, variables, x), image, mask, noises,
                       csmri.SOLVERS[solver], 12)
  denoise = pnp.rescaled(trained.as_function(network, variables), scale=1 + SIGMA / 510)
  result = csmri.reconstruct(denoise, image, mask, noises / np.sqrt(image.size), solver, iterations=12)
  assert np.abs(result['x'] - expected).max() < 1e-4
  assert len(result['residual']) == 12 and len(result['residual_ratio']) == 11
  assert result['psnr'] == pytest.approx(10 * np.log10(1 / np.mean((np.clip(expected, 0, 1) - image) ** 2)), abs=1e-3)


def test_a_denoiser_of_another_noise_level_or_task_is_refused(tmp_path):
  shutil.copy(os.path.join(ROOT, 'tests', 'fixtures', 'pnp', 'simplecnn.pth'), tmp_path / 'SimpleCNN_noise40.pth')
  with pytest.raises(UserError, match='trained at sigma 40, not --sigma=15'):
    csmri.load_denoiser(str(tmp_path / 'SimpleCNN_noise40.pth'), 15)
  with pytest.raises(UserError, match='no such file or workdir'):
    csmri.load_denoiser(str(tmp_path / 'missing'), 15)
  with pytest.raises(UserError, match='is no denoiser of the plug-and-play paper'):
    csmri.load_denoiser(os.path.join(ROOT, 'tests', 'fixtures', 'timm', 'rs_d1111_w0125.pth'), 15)
  # A zoo workdir (tools/make_checkpoint_fixtures.py's RealSN SimpleCNN, trained at sigma 25): its own noise level
  # is read from its config; a classifier's workdir is another task.
  workdir = os.path.join(ROOT, 'tests', 'fixtures', 'checkpoints', 'denoiser_realsn')
  with pytest.raises(UserError, match=r'denoiser_realsn holds a denoiser trained at sigma 25, not --sigma=15: pass'):
    csmri.load_denoiser(workdir, 15)
  assert 'simplecnn' in csmri.load_denoiser(workdir, 25)[1]
  with pytest.raises(UserError, match=r'classification_ema holds a classification checkpoint of resnetrs50, not '
                                      r'denoising'):
    csmri.load_denoiser(os.path.join(ROOT, 'tests', 'fixtures', 'checkpoints', 'classification_ema'), 15)


@pytest.mark.slow
@pytest.mark.skipif(not PNP_DATA, reason='set ZOO_PNP_DATA to the plug-and-play paper\'s data')
def test_the_command_on_the_papers_brain():
  """Released RealSN-SimpleCNN, ADMM, 30 iterations on Brain / random: one JSON line whose residuals contract."""
  weights = os.path.join(PNP_DATA, 'pretrained', 'RealSN_SimpleCNN_noise15.pth')
  rc, out, err = run_cli('-m', 'zoo.inverse.csmri', f'--weights={weights}', f'--data_dir={PNP_DATA}',
                         '--iterations=30', timeout=300)
  assert rc == 0, err[-2000:]
  result = json.loads(out.splitlines()[-1])
  assert result['denoiser'] == 'RealSN-SimpleCNN (4 layers)' and result['psnr'] > result['zero_filled_psnr'] + 4
  assert len(result['residual']) == 30 and max(result['residual_ratio'][10:]) < 1
