"""Gaussian denoising: a registered denoiser (dncnn, simplecnn) learns D(noisy) = clean on natural-image patches.

Training reads size x size patches of the training images at `input.patch_scales` (uint8, flipped and rotated by
stateless seeds) and adds
noise on the device: N(0, sigma^2) with sigma = `noise.sigma`/255, or, for a blind denoiser (`noise.sigma=0`), a
sigma drawn per patch from U(0, `noise.blind_max`/255). The loss is the mean squared error of D(noisy) against the
clean patch. Evaluation denoises the held-out images (never trained on), centre-cropped to `input.eval_image_size`,
with noise of a fixed seed at `noise.eval_sigma`, and reports peak PSNR (peak 1.0) of the clipped output and of the
noisy input.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import zoo
from zoo.data import natural_images
from zoo.errors import UserError
from zoo.metrics import psnr
from zoo.tasks.arrays import ArrayTask
from zoo.tasks.base import averages


class DenoisingTask(ArrayTask):
  """Denoising of natural grey images (zoo/data/natural_images.py) with additive Gaussian noise."""
  TrainMetrics = averages('loss', 'psnr', 'grad_norm')
  EvalMetrics = averages('loss', 'psnr', 'psnr_noisy')
  EXAMPLES = 'patches'

  def __init__(self, config):
    super().__init__(config)
    noise = config.noise
    if noise.sigma < 0 or (noise.sigma == 0 and (noise.blind_max <= 0 or noise.eval_sigma <= 0)):
      raise UserError('noise.sigma must be > 0 (in /255 units), or 0 for a blind denoiser with noise.blind_max > 0 and '
                      f'noise.eval_sigma > 0; got sigma={noise.sigma}, blind_max={noise.blind_max}, '
                      f'eval_sigma={noise.eval_sigma}')

  @functools.cached_property
  def model(self):
    # Cross-replica BatchNorm (dncnn); the spectral-norm vectors are the same on every device without it.
    return zoo.create_model(self.config.model, bn_axis_name='batch', **self.config.model_kwargs)

  def load_examples(self):
    """uint8 [N, size, size, 1]: the patches of the training images."""
    c = self.config
    train = natural_images.load(c.dataset, c.train_split, c.get('data_dir'))
    return natural_images.patches(train, c.input.patch_size, c.input.patch_stride, c.input.get('patch_scales', (1.0,)))

  @functools.cached_property
  def eval_images(self):
    """The held-out images (never trained on), centre-cropped to input.eval_image_size: float32 [N, H, W, 1]."""
    c = self.config
    return np.stack([natural_images.center_crop(im, c.input.eval_image_size)
                     for im in natural_images.load(c.dataset, c.eval_split, c.get('data_dir'))])[..., None]

  def init_inputs(self):
    # RealSN's power-iteration vectors take the shape of this input: the training patch.
    size = self.config.input.patch_size
    return jnp.zeros((1, size, size, 1), jnp.float32)

  def load_eval(self, image_size):
    """{'clean', 'noisy'}: the held-out images, centre-cropped further to `image_size` if given, and the same with
    noise of the seed at noise.eval_sigma (noise.sigma if 0)."""
    images = self.eval_images
    if image_size:
      images = np.stack([natural_images.center_crop(im[..., 0], image_size) for im in images])[..., None]
    noise = self.config.noise
    sigma = (noise.eval_sigma or noise.sigma) / 255.0
    rng = np.random.default_rng(self.config.seed)
    return {'clean': images, 'noisy': (images + sigma * rng.standard_normal(images.shape)).astype(np.float32)}

  def train_loss(self, params, batch_stats, batch, rng):
    clean = batch['image'].astype(jnp.float32) / 255.0
    noise = self.config.noise
    if noise.sigma > 0:
      sigma = jnp.full((clean.shape[0], 1, 1, 1), noise.sigma / 255.0)
    else:
      sigma = jax.random.uniform(jax.random.fold_in(rng, 1), (clean.shape[0], 1, 1, 1)) * noise.blind_max / 255.0
    noisy = clean + sigma * jax.random.normal(rng, clean.shape)
    denoised, updates = self.model.apply({'params': params, 'batch_stats': batch_stats}, noisy, train=True,
                                         mutable=['batch_stats'])
    loss = jnp.mean(jnp.square(denoised - clean))
    return loss, (updates.get('batch_stats', {}), {'psnr': psnr(denoised, clean)})

  def eval_outputs(self, params, batch_stats, batch):
    denoised = self.model.apply({'params': params, 'batch_stats': batch_stats}, batch['noisy'], train=False)
    denoised = jnp.clip(denoised, 0.0, 1.0)
    return {'loss': jnp.mean(jnp.square(denoised - batch['clean']), axis=(1, 2, 3)),
            'psnr': psnr(denoised, batch['clean']), 'psnr_noisy': psnr(batch['noisy'], batch['clean']),
            'mask': batch['mask']}
