"""ResNet-RS: "Revisiting ResNets: Improved Training and Scaling Strategies" (Bello et al., 2021).

A ResNet-D with squeeze-and-excitation in every bottleneck, a deep stem whose max-pool is replaced by a strided
convolution, zero-initialised last BatchNorm of each residual branch, per-stage stochastic depth and dropout before
the classifier. We follow the paper's TF1 release (and timm's port of it): ReLU, BN epsilon 1e-5, symmetric padding.
Tensors are NHWC.
"""
import functools
from typing import Any, Sequence

import jax.numpy as jnp
import flax.linen as nn

from zoo.models.layers import StochasticDepth, as_dtype, avg_pool_2x2_ceil, conv_init, same_padding
from zoo.registry import register_model

# Blocks per stage of the seven published depths.
DEPTHS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    270: (4, 29, 53, 4),
    350: (4, 36, 72, 4),
    420: (4, 44, 87, 4),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # bottleneck widths; each block outputs 4x
STEM_WIDTHS = (32, 32, 64)
EXPANSION = 4
SE_RATIO = 0.25


class ConvBN(nn.Module):
  """Convolution (no bias, symmetric padding) followed by BatchNorm and, optionally, ReLU."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  relu: bool = True
  zero_init_gamma: bool = False
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (self.kernel_size,) * 2, (self.strides,) * 2, padding=same_padding(self.kernel_size),
                use_bias=False, kernel_init=conv_init, dtype=self.dtype, name='conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype,
                     scale_init=nn.initializers.zeros if self.zero_init_gamma else nn.initializers.ones,
                     name='bn')(x)
    return nn.relu(x) if self.relu else x


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018): channel gates from the global mean, through a 1x1 bottleneck."""
  reduced: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(nn.Conv(self.reduced, (1, 1), kernel_init=conv_init, dtype=self.dtype, name='reduce')(s))
    s = nn.Conv(x.shape[-1], (1, 1), kernel_init=conv_init, dtype=self.dtype, name='expand')(s)
    return x * nn.sigmoid(s)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (carries the stride) -> 1x1 (4x) -> BN(gamma=0) -> SE -> stochastic depth, plus a ResNet-D shortcut."""
  width: int
  strides: int = 1
  project: bool = False  # shortcut needs a projection (first block of a stage)
  drop_path: float = 0.0
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv_bn = functools.partial(ConvBN, bn_momentum=self.bn_momentum, dtype=self.dtype)
    out = EXPANSION * self.width
    y = conv_bn(self.width, 1, name='conv1')(x, train)
    y = conv_bn(self.width, 3, self.strides, name='conv2')(y, train)
    y = conv_bn(out, 1, relu=False, zero_init_gamma=True, name='conv3')(y, train)
    y = SqueezeExcite(max(1, int(out * SE_RATIO)), dtype=self.dtype, name='se')(y)
    y = StochasticDepth(self.drop_path)(y, train)
    shortcut = x
    if self.project:
      # ResNet-D: average-pool before the 1x1 projection instead of striding it, so no activation is skipped.
      if self.strides > 1:
        shortcut = avg_pool_2x2_ceil(shortcut)
      shortcut = conv_bn(out, 1, relu=False, name='shortcut')(shortcut, train)
    return nn.relu(y + shortcut)


class Stem(nn.Module):
  """Deep stem: three 3x3 convs (the first strided), then a strided 3x3 conv in place of the max-pool."""
  widths: Sequence[int] = STEM_WIDTHS
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv_bn = functools.partial(ConvBN, bn_momentum=self.bn_momentum, dtype=self.dtype)
    for i, w in enumerate(self.widths):
      x = conv_bn(w, 3, 2 if i == 0 else 1, name=f'conv{i + 1}')(x, train)
    return conv_bn(self.widths[-1], 3, 2, name='pool')(x, train)


class ResNetRS(nn.Module):
  """ResNet-RS classifier. `depth` names a published member; `stage_depths` and `width_multiplier` build others.

  Call: `apply(variables, images_nhwc, train=False) -> logits`. Training draws dropout and stochastic depth
  from the 'dropout' rng and updates 'batch_stats'.
  """
  depth: int = 50
  num_classes: int = 1000
  stage_depths: Sequence[int] | None = None  # overrides the published blocks per stage
  width_multiplier: float = 1.0
  dropout_rate: float = 0.25
  stochastic_depth_rate: float = 0.0
  bn_momentum: float = 0.9
  dtype: Any = 'float32'

  def check_config(self):
    if self.stage_depths is None and self.depth not in DEPTHS:
      raise ValueError(f'ResNet-RS depth {self.depth} is not published; valid depths: {sorted(DEPTHS)} '
                       '(or give stage_depths)')
    if self.stage_depths is not None and (len(self.stage_depths) != 4 or min(self.stage_depths) < 1):
      raise ValueError(f'stage_depths must be four positive block counts, got {self.stage_depths}')
    if self.width_multiplier <= 0:
      raise ValueError(f'width_multiplier must be positive, got {self.width_multiplier}')
    if not 0.0 <= self.dropout_rate < 1.0 or not 0.0 <= self.stochastic_depth_rate < 1.0:
      raise ValueError('dropout_rate and stochastic_depth_rate must lie in [0, 1)')

  @property
  def blocks(self) -> tuple[int, ...]:
    return tuple(self.stage_depths) if self.stage_depths is not None else DEPTHS[self.depth]

  def _width(self, w: int) -> int:
    return max(1, int(round(w * self.width_multiplier)))

  @nn.compact
  def __call__(self, x, train: bool = False):
    dtype = as_dtype(self.dtype)
    x = x.astype(dtype)
    x = Stem(tuple(self._width(w) for w in STEM_WIDTHS), self.bn_momentum, dtype, name='stem')(x, train)
    for s, (n, w) in enumerate(zip(self.blocks, STAGE_WIDTHS)):
      # TF1 stochastic depth: one rate per stage, growing linearly with the stage index (2..5 of 5).
      rate = self.stochastic_depth_rate * (s + 2) / 5
      for b in range(n):
        x = Bottleneck(self._width(w), strides=2 if (b == 0 and s > 0) else 1, project=(b == 0), drop_path=rate,
                       bn_momentum=self.bn_momentum, dtype=dtype, name=f'stage{s + 1}_block{b}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), dtype=dtype, name='head')(x)
    return x.astype(jnp.float32)


for _depth in DEPTHS:
  register_model(f'resnetrs{_depth}', ResNetRS, depth=_depth)
