"""The MRI reconstruction task (PD-Net), its config, SSIM / NMSE and the fastMRI reader."""
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.metrics
import skimage.transform

from configs import pdnet
from helpers import apply_overrides
from zoo import trainer
from zoo.data import fastmri
from zoo.errors import DatasetError
from zoo.errors import UserError
from zoo.inverse import mri
from zoo.metrics import nmse, psnr, ssim
from zoo.tasks.reconstruction import ReconstructionTask, smooth_phase


def tiny_config(arg='cartesian-4', **overrides):
  """A 3-iteration PD-Net with 8 features and 2/2 memory channels on 32x32 crops, 8-image batches, 150 steps."""
  c = pdnet.get_config(arg)
  c.model_kwargs.update(iterations=3, features=8, primal_channels=2, dual_channels=2)
  c.input.image_size = 32
  c.input.patch_stride = 32
  c.num_train_steps = 150
  c.learning_rate = 3e-3
  c.log_every_steps = 50
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  return apply_overrides(c, overrides)


def test_config_argument():
  c = pdnet.get_config('random-8')
  assert (c.task, c.model, c.kspace.mask, c.kspace.accel, c.kspace.noise_std) == ('reconstruction', 'pdnet', 'random',
                                                                                    8.0, 0.0)
  assert dict(c.model_kwargs) == dict(relaxation='learned', iterations=10, primal_channels=5, dual_channels=5,
                                      features=32, dtype='float32')
  assert (c.batch_size, c.learning_rate, c.lr_base_batch, c.optimizer, c.schedule) == (8, 1e-3, 8, 'adamw', 'cosine')
  assert (c.warmup_epochs, c.weight_decay, c.ema_decay, c.dataset, c.input.image_size) == (0, 0, 0, 'skimage', 128)
  assert pdnet.get_config('radial-2.5').kspace.accel == 2.5
  for bad in ('spiral-4', 'cartesian', 'cartesian-x', 'cartesian-0.5', 'random-inf', '4-cartesian'):
    with pytest.raises(ValueError, match='MASK-ACCEL|ACCEL must be'):
      pdnet.get_config(bad)


def test_bad_settings():
  with pytest.raises(UserError, match='noise_std must be'):
    ReconstructionTask(tiny_config(**{'kspace.noise_std': -0.1}))
  with pytest.raises(UserError, match="mask kind 'spiral' unknown"):
    ReconstructionTask(tiny_config(**{'kspace.mask': 'spiral'}))
  with pytest.raises(DatasetError, match="dataset 'pnp'; valid: skimage, fastmri"):
    ReconstructionTask(tiny_config(dataset='pnp'))
  with pytest.raises(DatasetError, match="dataset 'fastmri' needs --config.data_dir"):
    ReconstructionTask(tiny_config(dataset='fastmri')).check_data()


@pytest.mark.parametrize('channels', [1, 2])
def test_ssim_matches_skimage(channels):
  rng = np.random.default_rng(0)
  ref = scipy.ndimage.gaussian_filter(rng.random((2, 40, 33, channels)), (0, 2, 2, 0))
  x = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
  ours = np.asarray(ssim(x, ref))
  theirs = [skimage.metrics.structural_similarity(a, b, data_range=1.0, channel_axis=-1) for a, b in zip(x, ref)]
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  assert 0.2 < ours.min() < 0.99
  np.testing.assert_allclose(ssim(ref, ref), 1.0, atol=1e-6)


def test_nmse():
  ref = np.random.default_rng(1).random((3, 8, 8, 1))
  np.testing.assert_allclose(nmse(1.1 * ref, ref), 0.01, rtol=1e-5)
  x = ref + 0.1
  np.testing.assert_allclose(nmse(x, ref), [np.sum(0.01 * np.ones_like(r)) / np.sum(r ** 2) for r in ref], rtol=1e-5)


def test_smooth_phase():
  phase = np.asarray(smooth_phase(np.random.default_rng(2).standard_normal((3, 64, 48))))
  np.testing.assert_allclose(np.abs(phase).max(axis=(1, 2)), np.pi, rtol=1e-6)
  spectrum = np.abs(np.fft.fft2(phase)) ** 2
  ky, kx = np.meshgrid(np.fft.fftfreq(64) * 64, np.fft.fftfreq(48) * 48, indexing='ij')
  assert spectrum[..., np.hypot(ky, kx) > 8].sum() < 1e-6 * spectrum.sum()  # nothing above 8 cycles per image
  assert not np.allclose(phase[0], phase[1])


def test_kspace_simulation():
  """A fully sampled noiseless mask: A* y = x. Under a 4x mask y vanishes off the mask; noise has its std."""
  task = ReconstructionTask(tiny_config('cartesian-1'))
  assert task.sampling_mask((32, 32)).min() == 1.0
  rng = np.random.default_rng(3)
  magnitude = rng.random((2, 32, 32))
  x = magnitude * np.exp(1j * np.asarray(smooth_phase(rng.standard_normal((2, 32, 32)))))
  kspace, mask = task.measure(x, rng.standard_normal((2, 32, 32, 2)))
  assert kspace.shape == (2, 32, 32, 2) and mask.shape == (2, 32, 32)
  back = mri.adjoint(mri.from_channels(kspace), mask)
  np.testing.assert_allclose(back, x, atol=1e-5)
  np.testing.assert_allclose(jnp.abs(back), magnitude, atol=1e-5)

  noisy = ReconstructionTask(tiny_config('cartesian-4', **{'kspace.noise_std': 0.1}))
  noise = rng.standard_normal((2, 32, 32, 2))
  kspace, mask = noisy.measure(x, noise)
  sampled = np.asarray(mask[0]) == 1
  assert sampled.mean() == 0.25
  np.testing.assert_array_equal(np.asarray(kspace)[:, ~sampled], 0.0)
  clean = np.asarray(mri.to_channels(mri.fft2c(x)))
  np.testing.assert_allclose((np.asarray(kspace) - clean)[:, sampled], 0.1 * noise[:, sampled], atol=1e-5)


def test_eval_is_deterministic():
  a, b = (list(ReconstructionTask(tiny_config()).eval_batches(8)) for _ in range(2))
  assert len(a) == 1 and a[0]['kspace'].shape == (8, 32, 32, 2) and a[0]['target'].shape == (8, 32, 32, 1)
  for key in ('kspace', 'target', 'mask'):
    np.testing.assert_array_equal(a[0][key], b[0][key])
  np.testing.assert_array_equal(a[0]['mask'], [1, 1, 1, 1, 0, 0, 0, 0])  # camera, coins, moon, the phantom
  phantom = skimage.transform.resize(skimage.data.shepp_logan_phantom(), (32, 32), anti_aliasing=True)
  np.testing.assert_allclose(a[0]['target'][3, ..., 0], phantom, atol=1e-6)
  # The photographs got a phase: their k-space is not conjugate-symmetric, as a real image's would be.
  full = ReconstructionTask(tiny_config('cartesian-1'))
  y = mri.from_channels(next(full.eval_batches(8))['kspace'][0])
  mirrored = np.conj(np.roll(np.flip(y, (0, 1)), 1, (0, 1)))
  assert np.abs(y - mirrored).mean() > 0.3 * np.abs(y).mean()


def test_resumed_batches_are_the_straight_runs():
  task = ReconstructionTask(tiny_config())
  straight = task.train_batches(0)
  batches = [next(straight)['image'] for _ in range(5)]
  resumed = next(task.train_batches(3))['image']
  np.testing.assert_array_equal(resumed, batches[3])
  assert batches[0].dtype == np.uint8 and batches[0].shape == (8, 32, 32, 1)
  assert not np.array_equal(batches[0], batches[1])
  assert task.steps_per_epoch == 2827 // 8


def test_parameters_are_the_bare_networks():
  """Checkpoints of the task load into `zoo.create_model('pdnet')` itself."""
  task = ReconstructionTask(tiny_config())
  ours = jax.eval_shape(task.model.init, jax.random.key(0), task.init_inputs())
  inputs = task.init_inputs()
  bare = jax.eval_shape(task.model.net.init, jax.random.key(0), inputs['kspace'], inputs['mask'])
  assert jax.tree.structure(ours) == jax.tree.structure(bare)
  assert 'primal0' in ours['params']['learned']


# ---- fastMRI ----

def complex_volume(seed, slices, h, w):
  """Smooth complex images: a positive magnitude and a phase, both low-passed noise."""
  rng = np.random.default_rng(seed)
  magnitude = 0.2 + scipy.ndimage.gaussian_filter(rng.random((slices, h, w)), (0, 2, 2))
  phase = 3 * scipy.ndimage.gaussian_filter(rng.standard_normal((slices, h, w)), (0, 4, 4))
  return (magnitude * np.exp(1j * phase)).astype(np.complex64)


def write_volume(path, image, crop, centred=True):
  """A single-coil file of the fastMRI layout: centred k-space of `image`, and reconstruction_esc = |centre crop|
  of the image, computed in a scale of its own (x 1e-3, as an FFT of another normalisation would)."""
  axes = (-2, -1)
  kspace = np.fft.fft2(np.fft.ifftshift(image, axes=axes), norm='ortho')
  kspace = np.fft.fftshift(kspace, axes=axes) if centred else kspace
  top, left = (image.shape[1] - crop) // 2, (image.shape[2] - crop) // 2
  esc = 1e-3 * np.abs(image[:, top:top + crop, left:left + crop])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with h5py.File(path, 'w') as f:
    f['kspace'] = kspace.astype(np.complex64)
    f['reconstruction_esc'] = esc.astype(np.float32)


def test_fastmri_reader_reproduces_the_ground_truth(tmp_path):
  image = complex_volume(0, 2, 40, 36)
  write_volume(str(tmp_path / 'val' / 'a.h5'), image, crop=24)
  crop = image[:, 8:32, 6:30] / np.abs(image[:, 8:32, 6:30]).max()
  got = fastmri.load(str(tmp_path), 'val', size=24, crop=24)
  assert got.dtype == np.complex64 and got.shape == (2, 24, 24)
  np.testing.assert_allclose(got, crop, atol=2e-6)
  assert np.abs(got).max() == pytest.approx(1.0, abs=1e-6)
  smaller = fastmri.load(str(tmp_path), 'val', size=16, crop=24)
  resized = [skimage.transform.resize(part, (2, 16, 16), anti_aliasing=True) for part in (crop.real, crop.imag)]
  np.testing.assert_allclose(smaller, resized[0] + 1j * resized[1], atol=2e-6)
  assert np.abs(smaller).max() <= 1.0 + 1e-6
  narrower = fastmri.load(str(tmp_path), 'val', size=20, crop=20)  # another field of view, same check
  np.testing.assert_allclose(np.abs(narrower), np.abs(image[:, 10:30, 8:28]) / np.abs(image[:, 10:30, 8:28]).max(),
                             atol=2e-6)


def test_fastmri_reader_errors(tmp_path):
  with pytest.raises(DatasetError, match='is not a directory'):
    fastmri.load(str(tmp_path), 'train', 24)
  os.makedirs(tmp_path / 'train')
  with pytest.raises(DatasetError, match='holds no .h5 files'):
    fastmri.load(str(tmp_path), 'train', 24)
  with h5py.File(tmp_path / 'train' / 'a.h5', 'w') as f:
    f['kspace'] = np.zeros((1, 40, 36), np.complex64)
  with pytest.raises(DatasetError, match='lacks reconstruction_esc'):
    fastmri.load(str(tmp_path), 'train', 24)
  write_volume(str(tmp_path / 'train' / 'a.h5'), complex_volume(1, 1, 40, 36), crop=24, centred=False)
  with pytest.raises(DatasetError, match=r'far from the centre .* expected centred \(fftshifted\)'):
    fastmri.load(str(tmp_path), 'train', 24, crop=24)
  write_volume(str(tmp_path / 'train' / 'a.h5'), complex_volume(1, 1, 40, 36), crop=24)
  with h5py.File(tmp_path / 'train' / 'a.h5', 'r+') as f:
    f['reconstruction_esc'][...] = np.abs(complex_volume(2, 1, 24, 24))  # another image's
  with pytest.raises(DatasetError, match=r'is not \|centre crop of the inverse FFT\|'):
    fastmri.load(str(tmp_path), 'train', 24, crop=24)
  with pytest.raises(DatasetError, match='smaller than the 320x320 crop'):
    fastmri.load(str(tmp_path), 'train', 24)


@pytest.mark.slow
def test_training_reads_fastmri(tmp_path):
  """Two steps on 8 train slices (two files); eval's zero-filled PSNR is that of the file's own ground truth."""
  data = tmp_path / 'data'
  for i in range(2):
    write_volume(str(data / 'train' / f'{i}.h5'), complex_volume(i, 4, 40, 36), crop=24)
  truth = complex_volume(5, 2, 40, 36)
  write_volume(str(data / 'val' / 'v.h5'), truth, crop=24)
  config = tiny_config(dataset='fastmri', data_dir=str(data), eval_split='val', num_train_steps=2,
                       **{'input.image_size': 24, 'input.crop': 24, 'model_kwargs.iterations': 1})
  task = ReconstructionTask(config)
  assert task.examples.shape == (8, 24, 24, 2) and task.examples.dtype == np.float32
  metrics = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
  x = truth[:, 8:32, 6:30] / np.abs(truth[:, 8:32, 6:30]).max()
  mask = task.sampling_mask((24, 24))
  zero_filled = np.clip(np.abs(np.fft.ifft2(mask * np.fft.fft2(x, norm='ortho'), norm='ortho')), 0, 1)
  expected = np.mean(psnr(zero_filled[..., None], np.abs(x)[..., None]))
  assert metrics['psnr_zero_filled'] == pytest.approx(float(expected), abs=1e-3)
  assert np.isfinite(metrics['psnr']) and 0 < metrics['ssim'] <= 1


@pytest.fixture(scope='module')
def trained(shared_training):
  config = tiny_config()
  return config, shared_training('pdnet', lambda workdir: trainer.train_and_evaluate(config, workdir))[1]


@pytest.mark.slow
def test_pdnet_beats_zero_filled(trained):
  config, metrics = trained
  # Measured (2026-12-05, `pytest -s tests/test_reconstruction.py -k beats` prints them): zero-filled 20.11 dB on the
  # 32x32 held-out images at 4x Cartesian; 150 steps of the tiny PD-Net reach 21.27 dB (+1.16 dB; 21.20 with the
  # earlier tf.data input's random stream), NMSE 0.238.
  print(metrics)
  assert metrics['psnr_zero_filled'] == pytest.approx(20.11, abs=0.05)
  assert metrics['psnr'] > metrics['psnr_zero_filled'] + 0.6, metrics
  assert 0.4 < metrics['ssim'] < 1 and metrics['nmse'] < 0.25
  # Eval averages the four held-out images, not the padding: the zero-filled PSNR computed directly agrees.
  task = ReconstructionTask(config)
  kspace, target = task.eval_data(32)
  mask = task.sampling_mask((32, 32))
  zero_filled = np.clip(np.abs(mri.adjoint(mri.from_channels(kspace), mask)), 0, 1)[..., None]
  assert metrics['psnr_zero_filled'] == pytest.approx(float(np.mean(psnr(zero_filled, target))), abs=1e-3)
