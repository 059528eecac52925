"""ResNet-RS: "Revisiting ResNets: Improved Training and Scaling Strategies" (Bello et al., 2021).

A ResNet-D with squeeze-and-excitation in every bottleneck, a deep stem whose max-pool is replaced by a strided
convolution, zero-initialised last BatchNorm of each residual branch, per-stage stochastic depth and dropout before
the classifier. We follow the paper's TF1 release (and timm's port of it): ReLU, BN epsilon 1e-5, symmetric padding.
Tensors are NHWC.
"""
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from zoo.errors import UserError
from zoo.models.layers import (StochasticDepth, as_dtype, avg_pool_2x2_ceil, conv_init, loop_friendly_conv,
                               same_padding)
from zoo.registry import imagenet_card, register_model

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
# The released weights of each depth (the paper's TF1 release, as timm ports them: resnetrs{depth}.tf_in1k): the
# side they are evaluated at and the centre-crop fraction there.
RELEASED = {50: (160, 0.91), 101: (192, 0.94), 152: (256, 1.0), 200: (256, 1.0), 270: (256, 1.0), 350: (288, 1.0),
            420: (320, 1.0)}
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
  bn_axis_name: str | None = None  # BN statistics over this mapped axis in training (cross-replica BN)
  dtype: Any = jnp.float32
  conv: Callable | None = None  # replaces lax.conv_general_dilated (same parameters)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (self.kernel_size,) * 2, (self.strides,) * 2, padding=same_padding(self.kernel_size),
                use_bias=False, kernel_init=conv_init, dtype=self.dtype, conv_general_dilated=self.conv,
                name='conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype,
                     axis_name=self.bn_axis_name if train else None,
                     scale_init=nn.initializers.zeros if self.zero_init_gamma else nn.initializers.ones,
                     name='bn')(x)
    return nn.relu(x) if self.relu else x


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018): channel gates from the global mean, through a 1x1 bottleneck."""
  reduced: int
  dtype: Any = jnp.float32
  conv: Callable | None = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, kernel_size=(1, 1), kernel_init=conv_init, dtype=self.dtype,
                             conv_general_dilated=self.conv)
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(conv(self.reduced, name='reduce')(s))
    s = conv(x.shape[-1], name='expand')(s)
    return x * nn.sigmoid(s)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (carries the stride) -> 1x1 (4x) -> BN(gamma=0) -> SE -> stochastic depth, plus a ResNet-D shortcut."""
  width: int
  strides: int = 1
  project: bool = False  # shortcut needs a projection (first block of a stage)
  drop_path: float = 0.0
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: Callable | None = None  # replaces lax.conv_general_dilated in every convolution (same parameters)

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv_bn = functools.partial(ConvBN, bn_momentum=self.bn_momentum, bn_axis_name=self.bn_axis_name,
                                dtype=self.dtype, conv=self.conv)
    out = EXPANSION * self.width
    y = conv_bn(self.width, 1, name='conv1')(x, train)
    y = conv_bn(self.width, 3, self.strides, name='conv2')(y, train)
    y = conv_bn(out, 1, relu=False, zero_init_gamma=True, name='conv3')(y, train)
    y = SqueezeExcite(max(1, int(out * SE_RATIO)), dtype=self.dtype, conv=self.conv, name='se')(y)
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
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv_bn = functools.partial(ConvBN, bn_momentum=self.bn_momentum, bn_axis_name=self.bn_axis_name,
                                dtype=self.dtype)
    for i, w in enumerate(self.widths):
      x = conv_bn(w, 3, 2 if i == 0 else 1, name=f'conv{i + 1}')(x, train)
    return conv_bn(self.widths[-1], 3, 2, name='pool')(x, train)


class ResNetRS(nn.Module):
  """ResNet-RS classifier. `depth` names a published member; `stage_depths` and `width_multiplier` build others.

  Call: `apply(variables, images_nhwc, train=False) -> logits`. Training draws dropout and stochastic depth
  from the 'dropout' rng and updates 'batch_stats'.

  `scan_blocks=True` runs the identical blocks of each stage (all but the first) under one `lax.scan`, which cuts
  the compile time of deep members (RS-420's training step on 2 CPU cores: 160-230 s to 20-30 s). Variables keep
  the unrolled layout either way, so checkpoints and converted weights load in both. The scanned blocks take
  `loop_friendly_conv`, whose custom gradient does not support forward-mode autodiff (jax.jvp).

  `remat=True` keeps only each block's input for the backward pass and recomputes the rest (flax `nn.remat`):
  memory traded for about one more forward pass. Variables and results are unchanged. What it saves is up to XLA's
  scheduler: on XLA:CPU only the scanned stages shrink (README, "Memory: bfloat16 and rematerialisation").
  """
  depth: int = 50
  num_classes: int = 1000
  stage_depths: Sequence[int] | None = None  # overrides the published blocks per stage
  width_multiplier: float = 1.0
  dropout_rate: float = 0.25
  stochastic_depth_rate: float = 0.0
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None  # a data-parallel trainer sets its axis: BN over the global batch
  dtype: Any = 'float32'
  scan_blocks: bool = False  # scan over the identical blocks of a stage; same variables, faster compile
  remat: bool = False  # recompute each block's activations in the backward pass: less memory, one more forward

  def check_config(self):
    if self.stage_depths is None and self.depth not in DEPTHS:
      raise UserError(f'ResNet-RS depth {self.depth} is not published; valid depths: {sorted(DEPTHS)} '
                       '(or give stage_depths)')
    if self.stage_depths is not None and (len(self.stage_depths) != 4 or min(self.stage_depths) < 1):
      raise UserError(f'stage_depths must be four positive block counts, got {self.stage_depths}')
    if self.width_multiplier <= 0:
      raise UserError(f'width_multiplier must be positive, got {self.width_multiplier}')
    if not 0.0 <= self.dropout_rate < 1.0 or not 0.0 <= self.stochastic_depth_rate < 1.0:
      raise UserError('dropout_rate and stochastic_depth_rate must lie in [0, 1)')

  @property
  def blocks(self) -> tuple[int, ...]:
    return tuple(self.stage_depths) if self.stage_depths is not None else DEPTHS[self.depth]

  def _width(self, w: int) -> int:
    return max(1, int(round(w * self.width_multiplier)))

  @nn.compact
  def __call__(self, x, train: bool = False):
    dtype = as_dtype(self.dtype)
    x = x.astype(dtype)
    stem_widths = tuple(self._width(w) for w in STEM_WIDTHS)
    x = Stem(stem_widths, self.bn_momentum, self.bn_axis_name, dtype, name='stem')(x, train)
    for s, (n, w) in enumerate(zip(self.blocks, STAGE_WIDTHS)):
      # TF1 stochastic depth: one rate per stage, growing linearly with the stage index (2..5 of 5).
      rate = self.stochastic_depth_rate * (s + 2) / 5
      block = functools.partial(nn.remat(Bottleneck, static_argnums=(2,)) if self.remat else Bottleneck,
                                self._width(w), drop_path=rate, bn_momentum=self.bn_momentum,
                                bn_axis_name=self.bn_axis_name, dtype=dtype)
      x = block(strides=2 if s > 0 else 1, project=True, name=f'stage{s + 1}_block0')(x, train)
      names = [f'stage{s + 1}_block{b}' for b in range(1, n)]
      # Init runs unrolled so that the variables are created under their per-block names.
      if self.scan_blocks and len(names) > 1 and not self.is_initializing():
        x = self._scan_stage(block(conv=loop_friendly_conv, parent=None), names, x, train)
      else:
        for name in names:
          x = block(name=name)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), dtype=dtype, name='head')(x)
    return x.astype(jnp.float32)

  def _scan_stage(self, block: Bottleneck, names: Sequence[str], x, train: bool):
    """Applies the unbound `block` once per name under `lax.scan`, so XLA compiles one body instead of len(names).

    A layout adapter: the variables stay stored per block (`stage{s}_block{b}`) as the unrolled model creates them;
    they are stacked along a leading axis for the scan, and updated batch statistics are unstacked back. Gradients
    reach the per-block params through the stack.
    """
    def stacked(col):
      return jax.tree.map(lambda *leaves: jnp.stack(leaves), *[self.get_variable(col, n) for n in names])

    # One dropout key per block, as each unrolled block draws its own (the masks themselves differ from unrolled).
    keys = jax.random.split(self.make_rng('dropout'), len(names)) if train and block.drop_path > 0 else None

    def body(h, xs):
      params, stats, key = xs
      variables = {'params': params, 'batch_stats': stats}
      rngs = {'dropout': key} if key is not None else {}
      if not train:
        return block.apply(variables, h, False), None
      h, updates = block.apply(variables, h, True, rngs=rngs, mutable=['batch_stats'])
      return h, updates['batch_stats']

    x, new_stats = jax.lax.scan(body, x, (stacked('params'), stacked('batch_stats'), keys))
    if train:
      for i, name in enumerate(names):
        self.put_variable('batch_stats', name, jax.tree.map(lambda a, i=i: a[i], new_stats))
    return x


for _depth, (_size, _crop) in RELEASED.items():
  register_model(f'resnetrs{_depth}', ResNetRS, imagenet_card(
      'resnetrs', _size, _crop, f'configs/resnet_rs.py:{_depth}-{_size}', ('head',), f'resnetrs{_depth}.tf_in1k'),
      depth=_depth)
