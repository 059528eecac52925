"""Readers for the data of the plug-and-play paper (uclaopt/Provable_Plug_and_Play), from a directory the user names.

Layout of `data_dir`: Demo_mat/CS_MRI/{Brain,Bust}.jpg, Q_{Random,Radial,Cartesian}30.mat, noises.mat;
Demo_mat/poisson_demo.mat, Demo_mat/single_photon_imaging_demo.mat; Set12/, Set68/, train/ (grey PNGs).

CS-MRI noise. The paper's scripts measure y = fft2(x) * mask + 3 * noises with numpy's unnormalised fft2 (and add
the noise at every frequency, so their zero-filled start ifft2(y) carries noise where nothing was sampled; only
the sampled entries enter the prox and gradient). With the orthonormal F of zoo.inverse.mri, fft2 = sqrt(H W) F,
so the same measurement is y / sqrt(H W) = mask * F x + 3 * noises / sqrt(H W): `load_csmri` returns that noise as
'kspace_noise', to pass as CSMRI.simulate(x, mask, noise=...). Its entries have real and imaginary parts of
standard deviation about 5 * 3 / 256 = 0.059 each.

Keys of the demos (`load_demo`), 1 x 1 arrays returned as floats:
- 'poisson': clean (uint8 256 x 256, 0..255), maxval (255), peak (1), clean_scaled (float64, clean * peak / maxval
  with zeros lifted to the smallest positive value), noisy (uint8 counts 0..7, Poisson(clean_scaled)). The reference
  reports PSNR of x / peak * maxval against clean with data range 255, i.e. of x against clean / 255.
- 'single_photon': im (float64 512 x 512, ground truth in [0, 0.88]), ob (uint8 4096 x 4096 binary sensor frame,
  K = 8 sensors a side per pixel, each firing with probability 1 - exp(-im)): SinglePhoton.from_binary(ob, 8).
"""
import os

import numpy as np
import scipy.io
from PIL import Image

from zoo.errors import UserError

MASKS = {'random': 'Q_Random30.mat', 'radial': 'Q_Radial30.mat', 'cartesian': 'Q_Cartesian30.mat'}
DEMOS = {'poisson': 'poisson_demo.mat', 'single_photon': 'single_photon_imaging_demo.mat'}
IMAGE_SETS = ('Set12', 'Set68', 'train')


class MissingDataError(UserError):
  """A file of the paper's data is not where the layout says."""


def _path(data_dir, *parts) -> str:
  path = os.path.join(data_dir, *parts)
  if not os.path.exists(path):
    raise MissingDataError(f'{path} not found: point the data directory at a copy of the plug-and-play paper\'s '
                           'data (uclaopt/Provable_Plug_and_Play: Demo_mat/, Set12/, Set68/, train/)')
  return path


def _grey(path) -> np.ndarray:
  return np.asarray(Image.open(path).convert('L'), np.float32) / 255.0


def _mat(path) -> dict:
  return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith('__')}


def load_csmri(data_dir) -> dict:
  """{'images': {'Brain', 'Bust'}: float32 256 x 256 in [0, 1]; 'masks': {'random', 'radial', 'cartesian'}: float32
  0/1 (variable Q1, unshifted layout); 'noises': complex128 as stored; 'kspace_noise': 3 * noises / sqrt(H W) as
  complex64, the paper's noise for the orthonormal operator (module docstring)}."""
  folder = ('Demo_mat', 'CS_MRI')
  images = {name: _grey(_path(data_dir, *folder, f'{name}.jpg')) for name in ('Brain', 'Bust')}
  masks = {kind: _mat(_path(data_dir, *folder, file))['Q1'].astype(np.float32) for kind, file in MASKS.items()}
  noises = _mat(_path(data_dir, *folder, 'noises.mat'))['noises'].astype(np.complex128)
  kspace_noise = (3.0 * noises / np.sqrt(noises.size)).astype(np.complex64)
  return {'images': images, 'masks': masks, 'noises': noises, 'kspace_noise': kspace_noise}


def load_demo(data_dir, name: str) -> dict:
  """The arrays of the Poisson ('poisson') or single-photon ('single_photon') demo; keys in the module docstring."""
  if name not in DEMOS:
    raise UserError(f'demo {name!r} unknown: choose one of {tuple(DEMOS)}')
  arrays = _mat(_path(data_dir, 'Demo_mat', DEMOS[name]))
  return {k: float(v.item()) if v.size == 1 else v for k, v in arrays.items()}


def load_images(data_dir, subset: str) -> list:
  """The grey images of 'Set12', 'Set68' or 'train' (BSD400) as float32 [H, W] in [0, 1], sorted by file name."""
  if subset not in IMAGE_SETS:
    raise UserError(f'image set {subset!r} unknown: choose one of {IMAGE_SETS}')
  folder = _path(data_dir, subset)
  return [_grey(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.lower().endswith('.png')]
