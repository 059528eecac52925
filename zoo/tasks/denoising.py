"""Gaussian denoising: a registered denoiser (dncnn, simplecnn) learns D(noisy) = clean on natural-image patches.

Training reads size x size patches of the training images (uint8, flipped and rotated by stateless seeds) and adds
noise on the device: N(0, sigma^2) with sigma = `noise.sigma`/255, or, for a blind denoiser (`noise.sigma=0`), a
sigma drawn per patch from U(0, `noise.blind_max`/255). The loss is the mean squared error of D(noisy) against the
clean patch. Evaluation denoises the held-out images (never trained on), centre-cropped to `input.eval_image_size`,
with noise of a fixed seed at `noise.eval_sigma`, and reports peak PSNR (peak 1.0) of the clipped output and of the
noisy input.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

import zoo
from zoo.data import natural_images, pipeline
from zoo.errors import UserError
from zoo.metrics import psnr
from zoo.tasks.classification import weight_decay_mask


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  psnr: metrics.Average.from_output('psnr')
  grad_norm: metrics.Average.from_output('grad_norm')


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  psnr: metrics.Average.from_output('psnr')
  psnr_noisy: metrics.Average.from_output('psnr_noisy')


class DenoisingTask:
  """Denoising of natural grey images (zoo/data/natural_images.py) with additive Gaussian noise."""
  TrainMetrics = TrainMetrics
  EvalMetrics = EvalMetrics
  weight_decay_mask = staticmethod(weight_decay_mask)

  def __init__(self, config):
    self.config = config
    inp = config.input
    noise = config.noise
    if noise.sigma < 0 or (noise.sigma == 0 and (noise.blind_max <= 0 or noise.eval_sigma <= 0)):
      raise UserError('noise.sigma must be > 0 (in /255 units), or 0 for a blind denoiser with noise.blind_max > 0 and '
                      f'noise.eval_sigma > 0; got sigma={noise.sigma}, blind_max={noise.blind_max}, '
                      f'eval_sigma={noise.eval_sigma}')
    train = natural_images.load(config.dataset, config.train_split, config.get('data_dir'))
    self.eval_images = np.stack([natural_images.center_crop(im, inp.eval_image_size)
                                 for im in natural_images.load(config.dataset, config.eval_split,
                                                               config.get('data_dir'))])[..., None]
    patches = natural_images.patches(train, inp.patch_size, inp.patch_stride)
    pipeline.check_array_fits(patches, config.batch_size, 'patches')
    self.patches = patches
    self.steps_per_epoch = len(patches) // config.batch_size
    # Cross-replica BatchNorm (dncnn); the spectral-norm vectors are the same on every device without it.
    self.model = zoo.create_model(config.model, bn_axis_name='batch', **config.model_kwargs)

  def init_inputs(self, image_size=None):
    # RealSN's power-iteration vectors take the shape of this input: the training patch.
    size = self.config.input.patch_size
    return jnp.zeros((1, size, size, 1), jnp.float32)

  def train_batches(self, start_step: int):
    """Endless batches {'image': uint8 [B, size, size, 1]} of patches (this host's rows), flipped and rotated."""
    return pipeline.array_train_batches(self.patches, self.config.batch_size, start_step, self.config.seed)

  def _eval_sigma(self):
    noise = self.config.noise
    return (noise.eval_sigma or noise.sigma) / 255.0

  def eval_batches(self, local_batch: int, image_size=None):
    """{'clean', 'noisy', 'mask'} batches of this host's held-out images; the noise is fixed by the seed."""
    images = self.eval_images[jax.process_index()::jax.process_count()]
    if image_size:
      images = np.stack([natural_images.center_crop(im[..., 0], image_size) for im in images])[..., None]
    rng = np.random.default_rng(self.config.seed)
    noisy = (images + self._eval_sigma() * rng.standard_normal(images.shape)).astype(np.float32)
    batch, steps = pipeline.array_eval_batching(len(self.eval_images), local_batch)
    return pipeline.padded_batches({'clean': images, 'noisy': noisy}, batch, steps)

  def num_eval_steps(self, local_batch: int) -> int:
    return pipeline.array_eval_batching(len(self.eval_images), local_batch)[1]

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
