"""MRI reconstruction: a network of (k-space, mask), such as pdnet, learns the image from undersampled k-space.

Images (`dataset`):
- 'skimage' (offline, the default): magnitudes from scikit-image's grey photographs (zoo/data/natural_images.py).
  Training takes the image_size crops at `input.patch_stride` of the train photographs (uint8, flipped and rotated
  by stateless seeds); held out are the test photographs, centre-cropped, and the Shepp-Logan phantom, resized. MRI
  images are complex, so each magnitude gets a smooth random phase (`smooth_phase`): a real image has a
  conjugate-symmetric k-space, half of which determines the rest, a shortcut that measured data does not offer.
- 'fastmri': complex slices of fastMRI's single-coil knees, measured phase kept (zoo/data/fastmri.py), flipped and
  rotated in training the same way.

Measurement: y = mask * (F x + noise_std (n + i n')), F the orthonormal FFT of zoo/inverse/mri.py, n and n' standard
normal, and one fixed mask for every image (`kspace.mask` at `kspace.accel`, drawn from `kspace.mask_seed`), as PD-Net
trains one network per mask. Training simulates on the device in `train_loss` from the step's rng, so every step
brings a fresh phase and fresh noise; evaluation simulates once on the host from `seed`, so every evaluation sees the
same k-space. The target is |x|, the loss the MSE of the output magnitude. Evaluation reports PSNR (peak 1), SSIM and
NMSE of the output clipped to [0, 1], and the PSNR of the zero-filled |A* y|, clipped alike, for reference.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import skimage.data
import skimage.transform

import zoo
from zoo.data import fastmri, natural_images
from zoo.errors import DatasetError, UserError
from zoo.inverse import mri
from zoo.metrics import nmse, psnr, ssim
from zoo.tasks.arrays import ArrayTask
from zoo.tasks.base import averages
from zoo.tasks.inputs import NamedInputs

DATASETS = ('skimage', 'fastmri')
# A photograph's phase: white noise low-passed by a Gaussian of this width in cycles per image (equally smooth at any
# image size), scaled to peak pi.
PHASE_CYCLES = 2.0


def smooth_phase(noise):
  """A smooth random phase [..., H, W] in [-pi, pi] from white noise of that shape (numpy or jax)."""
  h, w = noise.shape[-2:]
  ky, kx = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing='ij')
  lowpass = np.exp(-(ky ** 2 + kx ** 2) / (2 * PHASE_CYCLES ** 2))
  field = jnp.real(jnp.fft.ifft2(jnp.fft.fft2(noise) * lowpass))
  return np.pi * field / jnp.max(jnp.abs(field), axis=(-2, -1), keepdims=True)


@functools.cache
def sampling_mask(kind: str, shape: tuple, accel: float, seed: int) -> np.ndarray:
  return mri.make_mask(kind, shape, accel=accel, seed=seed)


class ReconstructionTask(ArrayTask):
  """Undersampled single-coil MRI of photographs with a simulated phase, or of fastMRI knees."""
  TrainMetrics = averages('loss', 'psnr', 'grad_norm')
  EvalMetrics = averages('loss', 'psnr', 'ssim', 'nmse', 'psnr_zero_filled')

  def __init__(self, config):
    super().__init__(config)
    size = config.input.image_size
    if config.dataset not in DATASETS:
      raise DatasetError(f'Unknown reconstruction dataset {config.dataset!r}; valid: {", ".join(DATASETS)}')
    if config.kspace.noise_std < 0:
      raise UserError(f'kspace.noise_std must be >= 0, got {config.kspace.noise_std}')
    self.sampling_mask((size, size))  # a bad mask kind or acceleration fails here, before any data is read

  @functools.cached_property
  def model(self):
    return NamedInputs(zoo.create_model(self.config.model, **self.config.model_kwargs), ('kspace', 'mask'))

  def sampling_mask(self, shape) -> np.ndarray:
    k = self.config.kspace
    return sampling_mask(k.mask, tuple(shape), k.accel, k.mask_seed)

  def load_examples(self):
    """float32 [N, size, size, 2] complex images (real, imaginary) of fastMRI, or uint8 [N, size, size, 1]
    magnitudes: the crops of the photographs."""
    c = self.config
    size = c.input.image_size
    if c.dataset == 'fastmri':
      images = fastmri.load(c.data_dir, c.train_split, size, c.input.crop)
      return np.stack([images.real, images.imag], axis=-1).astype(np.float32)
    return natural_images.patches(natural_images.load(c.dataset, c.train_split), size, c.input.patch_stride)

  def held_out(self, size: int) -> np.ndarray:
    """All held-out images at size x size: complex64 for fastMRI, float32 magnitudes for photographs."""
    c = self.config
    if c.dataset == 'fastmri':
      return fastmri.load(c.data_dir, c.eval_split, size, c.input.crop)
    photos = [natural_images.center_crop(im, size) for im in natural_images.load(c.dataset, c.eval_split)]
    phantom = skimage.transform.resize(skimage.data.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return np.stack(photos + [phantom]).astype(np.float32)

  def init_inputs(self):
    size = self.config.input.image_size
    return {'kspace': jnp.zeros((1, size, size, 2), jnp.float32), 'mask': jnp.ones((1, size, size), jnp.float32)}

  def measure(self, x, noise):
    """k-space channels [B, H, W, 2] of y = mask * (F x + noise_std noise) for complex images x [B, H, W] and noise
    [B, H, W, 2] (real, imaginary), and the mask broadcast to [B, H, W]."""
    mask = self.sampling_mask(x.shape[-2:])
    y = mri.forward(x, mask) + self.config.kspace.noise_std * mask * mri.from_channels(noise)
    return mri.to_channels(y), jnp.broadcast_to(mask, x.shape)

  def load_eval(self, image_size):
    """{'kspace' [N, size, size, 2], 'target' [N, size, size, 1]} of the held-out images, simulated from `seed`: the
    photographs' phase, then the noise."""
    kspace, target = self.simulate(self.held_out(image_size or self.config.input.image_size), self.config.seed)
    return {'kspace': kspace, 'target': target}

  def eval_data(self, size: int):
    """(k-space, targets) of every held-out image at `size`, as the evaluation sees them (`load_eval`)."""
    arrays = self.eval_arrays(size)
    return arrays['kspace'], arrays['target']

  def simulate(self, x, seed: int):
    """(k-space [N, H, W, 2], targets |x| [N, H, W, 1]) of images x [N, H, W], complex or magnitudes that get a
    smooth phase, on the host: the phase, then the noise, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    if not np.iscomplexobj(x):
      x = x * np.exp(1j * np.asarray(smooth_phase(rng.standard_normal(x.shape))))
    kspace, _ = self.measure(x, rng.standard_normal(x.shape + (2,)))
    return np.asarray(kspace, np.float32), np.abs(x)[..., None].astype(np.float32)

  def train_loss(self, params, batch_stats, batch, rng):
    image = batch['image']
    phase_rng, noise_rng = jax.random.split(rng)
    if image.shape[-1] == 1:  # a photograph's magnitude: give it a phase
      magnitude = image[..., 0].astype(jnp.float32) / 255.0
      x = magnitude * jnp.exp(1j * smooth_phase(jax.random.normal(phase_rng, magnitude.shape)))
    else:
      x = mri.from_channels(image)
    kspace, mask = self.measure(x, jax.random.normal(noise_rng, x.shape + (2,)))
    recon, updates = self.model.apply({'params': params, 'batch_stats': batch_stats},
                                      {'kspace': kspace, 'mask': mask}, train=True, mutable=['batch_stats'])
    target = jnp.abs(x)[..., None]
    loss = jnp.mean(jnp.square(recon - target))
    return loss, (updates.get('batch_stats', {}), {'psnr': psnr(recon, target)})

  def eval_outputs(self, params, batch_stats, batch):
    kspace, target = batch['kspace'], batch['target']
    mask = jnp.broadcast_to(self.sampling_mask(target.shape[1:3]), target.shape[:3])
    recon = self.model.apply({'params': params, 'batch_stats': batch_stats}, {'kspace': kspace, 'mask': mask},
                             train=False)
    recon = jnp.clip(recon, 0.0, 1.0)
    zero_filled = jnp.clip(jnp.abs(mri.adjoint(mri.from_channels(kspace), mask)), 0.0, 1.0)[..., None]
    return {'loss': jnp.mean(jnp.square(recon - target), axis=(1, 2, 3)), 'psnr': psnr(recon, target),
            'ssim': ssim(recon, target), 'nmse': nmse(recon, target),
            'psnr_zero_filled': psnr(zero_filled, target), 'mask': batch['mask']}
