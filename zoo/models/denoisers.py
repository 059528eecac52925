"""Residual CNN denoisers of the plug-and-play paper (Ryu et al. 2019): DnCNN and SimpleCNN, with spectral norm.

DnCNN (Zhang et al. 2017) predicts the noise: D(x) = x - N(x), N = conv-ReLU, (depth - 2) x [conv-BN-ReLU], conv,
all 3x3, 64 features, no bias. SimpleCNN is the same with 4 layers and no BatchNorm.

Plug-and-play ADMM / FBS converge when the residual N = I - D is eps-Lipschitz with eps small enough (Ryu et al.,
ICML 2019). With `spectral_norm='real'` each convolution is normalised as an operator (zoo/models/spectral_norm.py)
to lipschitz^(1/depth), ReLU is 1-Lipschitz, so the BN-free network satisfies Lip(N) <= lipschitz. BatchNorm scales
channels by gamma / sqrt(var + eps), which no normalisation bounds: DnCNN with BN has no guarantee (as in the paper).
`mode='standard'` normalises the reshaped kernel, which bounds nothing about the operator either.
"""
import flax.linen as nn
import jax.numpy as jnp

from zoo.models import layers
from zoo.models.spectral_norm import MODES, SpectralNorm
from zoo.errors import UserError
from zoo.registry import ModelCard, register_model


class DnCNN(nn.Module):
  """`model.apply(variables, noisy, train=False)` returns the denoised image (NHWC, any size, channels kept)."""
  depth: int = 17
  features: int = 64
  batch_norm: bool = True
  spectral_norm: str | None = None  # None, 'standard' or 'real'
  lipschitz: float = 1.0  # target Lipschitz constant of the residual network N when spectral_norm is set
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  def check_config(self):
    if self.spectral_norm not in MODES:
      raise UserError(f'spectral_norm must be one of {MODES}, got {self.spectral_norm!r}')
    if self.depth < 2:
      raise UserError(f'depth must be at least 2 (first and last convolution), got {self.depth}')

  def conv(self, features: int, index: int):
    return SpectralNorm(nn.Conv(features, (3, 3), padding='SAME', use_bias=False, dtype=layers.as_dtype(self.dtype)),
                        mode=self.spectral_norm, target=self.lipschitz ** (1.0 / self.depth), name=f'conv{index}')

  @nn.compact
  def residual(self, x, train: bool = False):
    """N(x): the noise the network sees in x (I - D)."""
    self.check_config()
    h = x.astype(layers.as_dtype(self.dtype))
    for i in range(self.depth - 1):
      h = self.conv(self.features, i)(h, update_stats=train)
      if self.batch_norm and i > 0:
        h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                         axis_name=self.bn_axis_name if train else None, dtype=h.dtype, name=f'bn{i}')(h)
      h = nn.relu(h)
    return self.conv(x.shape[-1], self.depth - 1)(h, update_stats=train).astype(jnp.float32)

  def __call__(self, x, train: bool = False):
    return x - self.residual(x, train)


# Trained on 40x40 patches of grey images in [0, 1], not normalised; fully convolutional, they denoise any size.
register_model('dncnn', DnCNN, ModelCard('denoisers', 'denoising', 40, 'configs/denoiser.py:dncnn-real-25'))
register_model('simplecnn', DnCNN, ModelCard('denoisers', 'denoising', 40, 'configs/denoiser.py:simplecnn-real-15'),
               depth=4, batch_norm=False)
