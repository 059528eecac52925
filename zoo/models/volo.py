"""VOLO: "VOLO: Vision Outlooker for Visual Recognition" (Yuan et al., 2021), members D1-D5.

A convolutional stem embeds 8x8 patches; outlookers (outlook attention: each position predicts, from its own
feature alone, how to mix its KxK neighbourhood) refine these fine tokens; a 2x2 strided convolution halves the grid,
a learned position embedding is added and transformer blocks follow; two CaiT class-attention blocks summarise the
tokens into a class token. We match timm's port (`timm.models.volo`): exact GELU, LayerNorm epsilon 1e-5, the same
drop-path schedule, and its parameter layout (see zoo/convert/timm_volo.py). Tensors are NHWC throughout.

Call contract:

* `apply(variables, images, train=False) -> logits` [B, num_classes] float32: head(class token) plus half the
  per-class maximum over the tokens of aux_head (token labelling's inference rule). `images` must be
  [B, H, W, 3] with (H, W) = `image_size`.
* `apply(variables, images, train=True, rngs={'dropout': key}, mutable=['batch_stats']) -> (outputs, updates)`,
  `outputs` a dict of float32 arrays, for the token-labelling loss (Jiang et al. 2021):
    'logits':     [B, C]        head(class token) alone.
    'aux_logits': [B, h, w, C]  aux_head of every token, (h, w) = image_size / 16 (14x14 at 224). After MixToken
                                the tokens inside the box are swapped back, so aux_logits[i] always describes
                                image i.
    'mix_mask':   [h, w]        1 inside the MixToken box, 0 elsewhere (all 0 when not mixing).
    'mix_lambda': []            fraction of tokens not replaced, 1 - mean(mix_mask) (1 when not mixing); the class
                                target is mix_lambda * y + (1 - mix_lambda) * y[::-1].
  MixToken (`mix_token=True`, training only): lambda ~ Beta(1, 1) and a box on the (h, w) grid (timm's `rand_bbox`,
  whose side is floor(sqrt(1 - lambda)) of the grid's and whose centre is uniform, clipped to the grid), scaled 2x
  onto the tokens after the patch embedding; those tokens of image i are replaced by image B-1-i's (`x[::-1]`). The
  draws come from the 'dropout' rng, as do drop-path's; without mixing or drop path no rng is needed.
"""
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from zoo.errors import UserError
from zoo.models.layers import StochasticDepth, as_dtype, avg_pool_2x2_ceil, conv_init, same_padding
from zoo.registry import imagenet_card, register_model

PATCH_SIZE = 8  # the stem's reduction: tokens at 1/8 of the image
POOLING_SCALE = 2  # the downsample after the outlookers: tokens at 1/16 from then on
LN_EPSILON = 1e-5  # torch's LayerNorm default (flax's is 1e-6)
OUTLOOK_KERNEL, OUTLOOK_PADDING, OUTLOOK_STRIDE = 3, 1, 2

VARIANTS = {
    'volo_d1': dict(layers=(4, 4, 8, 2), embed_dims=(192, 384, 384, 384), num_heads=(6, 12, 12, 12),
                    mlp_ratio=3.0, stem_hidden_dim=64),
    'volo_d2': dict(layers=(6, 4, 10, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16),
                    mlp_ratio=3.0, stem_hidden_dim=64),
    'volo_d3': dict(layers=(8, 8, 16, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16),
                    mlp_ratio=3.0, stem_hidden_dim=64),
    'volo_d4': dict(layers=(8, 8, 16, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16),
                    mlp_ratio=3.0, stem_hidden_dim=64),
    'volo_d5': dict(layers=(12, 12, 20, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16),
                    mlp_ratio=4.0, stem_hidden_dim=128),
}

# timm initialises every Linear (and the position embedding, the class token) with N(0, 0.02), biases zero.
dense_init = nn.initializers.truncated_normal(0.02)


def _pairs(size) -> tuple[int, int]:
  return (size, size) if isinstance(size, int) else tuple(size)


def _out_size(n: int, kernel_size: int, padding: int, stride: int) -> int:
  return (n + 2 * padding - kernel_size) // stride + 1


def unfold(x, kernel_size: int, padding: int, stride: int, axis: int = 3):
  """The KxK zero-padded neighbourhood of every stride-th position: (B, H, W, ...) -> (B, h, w, ...) with the K*K
  neighbours stacked at `axis` (index ki * K + kj, as torch's nn.Unfold). No patch-extraction convolution runs:
  VOLO's 3x3 stride-2 case reads the four 2x2 phases of the map (a reshape) with one-step shifts (outlook
  attention's backward pass 1.4x faster on CPU than with strided slices), other cases K*K strided slices."""
  if (kernel_size, padding, stride) == (3, 1, 2):
    return _unfold_3x3_stride2(x, axis)
  _, H, W = x.shape[:3]
  h, w = _out_size(H, kernel_size, padding, stride), _out_size(W, kernel_size, padding, stride)
  rest = x.shape[3:]
  xp = jnp.pad(x, [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * len(rest))
  cols = []
  for ki in range(kernel_size):
    for kj in range(kernel_size):
      start = (0, ki, kj) + (0,) * len(rest)
      limit = (x.shape[0], ki + stride * (h - 1) + 1, kj + stride * (w - 1) + 1) + rest
      cols.append(jax.lax.slice(xp, start, limit, (1, stride, stride) + (1,) * len(rest)))
  return jnp.stack(cols, axis=axis)


def fold(y, output_hw: tuple[int, int], kernel_size: int, padding: int, stride: int, axis: int = 3):
  """Overlap-add, the exact linear transpose of `unfold` (torch's F.fold): every neighbour value is added back where
  `unfold` read it, values that fall on the zero border are dropped."""
  if (kernel_size, padding, stride) == (3, 1, 2):
    return _fold_3x3_stride2(y, output_hw, axis)
  H, W = output_hw
  _, h, w = y.shape[:3]
  zero = jnp.zeros((), y.dtype)
  out = None
  for ki in range(kernel_size):
    for kj in range(kernel_size):
      # Interior padding spreads the values stride apart, edge padding moves them to their offset (negative: crops).
      part = jax.lax.index_in_dim(y, ki * kernel_size + kj, axis, keepdims=False)
      lo_h, lo_w = ki - padding, kj - padding
      config = [(0, 0, 0),
                (lo_h, H - lo_h - stride * (h - 1) - 1, stride - 1),
                (lo_w, W - lo_w - stride * (w - 1) - 1, stride - 1)] + [(0, 0, 0)] * (part.ndim - 3)
      part = jax.lax.pad(part, zero, config)
      out = part if out is None else out + part
  return out


def _shift(a, axis: int, forward: bool):
  """a[i] <- a[i - 1] (forward) or a[i + 1] (its transpose) along `axis`, zero filled."""
  n = a.shape[axis]
  pad = [(0, 0)] * a.ndim
  pad[axis] = (1, 0) if forward else (0, 1)
  return jnp.pad(jax.lax.slice_in_dim(a, 0, n - 1, axis=axis) if forward else
                 jax.lax.slice_in_dim(a, 1, n, axis=axis), pad)


def _unfold_3x3_stride2(x, axis):
  """Output row i reads input rows 2i - 1, 2i, 2i + 1: phase 1 of row pair i - 1, phases 0 and 1 of pair i (and the
  same for columns). Odd sizes get a zero row/column, which is where the padding would read anyway."""
  B, H, W = x.shape[:3]
  rest = x.shape[3:]
  x = jnp.pad(x, [(0, 0), (0, H % 2), (0, W % 2)] + [(0, 0)] * len(rest))
  phases = x.reshape(B, (H + 1) // 2, 2, (W + 1) // 2, 2, *rest)
  rows = [_shift(phases[:, :, 1], 1, True), phases[:, :, 0], phases[:, :, 1]]  # (B, h, w, 2, ...) each
  return jnp.stack([c for r in rows for c in (_shift(r[:, :, :, 1], 2, True), r[:, :, :, 0], r[:, :, :, 1])],
                   axis=axis)


def _fold_3x3_stride2(y, output_hw, axis):
  """Transpose of `_unfold_3x3_stride2`: phase 0 gets the centre neighbour, phase 1 the far one plus the near one of
  the next position; rows first per kernel row, then the kernel rows likewise."""
  B, h, w = y.shape[:3]
  part = [jax.lax.index_in_dim(y, k, axis, keepdims=False) for k in range(9)]
  rows = [jnp.stack([p[1], p[2] + _shift(p[0], 2, False)], axis=3) for p in (part[0:3], part[3:6], part[6:9])]
  phases = jnp.stack([rows[1], rows[2] + _shift(rows[0], 1, False)], axis=2)
  H, W = output_hw
  return phases.reshape(B, 2 * h, 2 * w, *phases.shape[5:])[:, :H, :W]


def _attend(q, k, v, dtype):
  """softmax(q k^T) v over heads-major (B, heads, N, head_dim) inputs (q pre-scaled). The normaliser divides the
  (N x head_dim) product rather than the (N x N) weights, one pass less over the largest tensor (1.3x faster than
  jax.nn.softmax on 2 CPU cores, forward and backward); the max shift is held constant, softmax ignores it."""
  logits = jnp.einsum('bhqd,bhkd->bhqk', q, k).astype(jnp.float32)
  e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
  y = jnp.einsum('bhqk,bhkd->bhqd', e.astype(dtype), v).astype(jnp.float32)
  return (y / jnp.sum(e, axis=-1)[..., None]).astype(dtype)


class OutlookAttention(nn.Module):
  """Outlook attention: each stride-2 position predicts, by a linear map of its (2x2 average-pooled) feature, a
  KxK -> KxK mixing of the values in its neighbourhood (per head, softmax over the source); the mixed neighbourhoods
  are folded back onto the map, overlaps summed. There is no query-key product, only the head_dim**-0.5 scale.
  Stride 2 (the pooling's); kernel_size = 2 * padding + 1 keeps the pooled and the unfolded grids equal."""
  num_heads: int
  kernel_size: int = OUTLOOK_KERNEL
  padding: int = OUTLOOK_PADDING
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    B, H, W, C = x.shape
    heads, k2 = self.num_heads, self.kernel_size ** 2
    head_dim = C // heads
    dense = lambda n, name, bias=True: nn.Dense(n, use_bias=bias, kernel_init=dense_init, dtype=self.dtype,
                                                name=name)
    v = dense(C, 'v', bias=False)(x).reshape(B, H, W, heads, head_dim)
    v = unfold(v, self.kernel_size, self.padding, OUTLOOK_STRIDE, axis=4)  # B, h, w, heads, K*K, head_dim
    h, w = v.shape[1:3]
    pooled = avg_pool_2x2_ceil(x)
    attn = dense(k2 * k2 * heads, 'attn')(pooled).reshape(B, h, w, heads, k2, k2)
    attn = jax.nn.softmax((attn * head_dim ** -0.5).astype(jnp.float32), axis=-1).astype(self.dtype)
    y = jnp.einsum('bijnpq,bijnqd->bijnpd', attn, v)
    y = fold(y, (H, W), self.kernel_size, self.padding, OUTLOOK_STRIDE, axis=4).reshape(B, H, W, C)
    return dense(C, 'proj')(y)


class TokenAttention(nn.Module):
  """Multi-head attention over a token sequence (B, N, C): the fields and the head split of SelfAttention and
  ClassAttention."""
  num_heads: int
  dtype: Any = jnp.float32

  def dense(self, features: int, name: str, bias: bool = False):
    return nn.Dense(features, use_bias=bias, kernel_init=dense_init, dtype=self.dtype, name=name)

  def heads(self, t, parts: int):
    """(B, N, parts * C) -> (parts, B, heads, N, head_dim). Heads-major: the attention products batch over leading
    axes (2x faster on CPU than einsums over token-major operands, which XLA transposes inside the product)."""
    return t.reshape(*t.shape[:2], parts, self.num_heads, -1).transpose(2, 0, 3, 1, 4)


class SelfAttention(TokenAttention):
  """Multi-head self-attention; qkv without bias, as VOLO's."""

  @nn.compact
  def __call__(self, x):
    B, N, C = x.shape
    q, k, v = self.heads(self.dense(3 * C, 'qkv')(x), 3)
    y = _attend(q * (C // self.num_heads) ** -0.5, k, v, self.dtype).transpose(0, 2, 1, 3).reshape(B, N, C)
    return self.dense(C, 'proj', bias=True)(y)


class ClassAttention(TokenAttention):
  """CaiT class attention: the class token (first of x) queries all tokens; only it is updated, so the cost is
  linear in the number of tokens. Returns the new class embedding (B, 1, C)."""

  @nn.compact
  def __call__(self, x):
    B, _, C = x.shape
    k, v = self.heads(self.dense(2 * C, 'kv')(x), 2)
    [q] = self.heads(self.dense(C, 'q')(x[:, :1]), 1)
    y = _attend(q * (C // self.num_heads) ** -0.5, k, v, self.dtype).reshape(B, 1, C)  # one query: (B, heads, 1, d)
    return self.dense(C, 'proj', bias=True)(y)


class Mlp(nn.Module):
  """Linear -> exact GELU (torch's nn.GELU; jax.nn.gelu defaults to the tanh form) -> Linear."""
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.hidden, kernel_init=dense_init, dtype=self.dtype, name='fc1')(x)
    y = jax.nn.gelu(y, approximate=False)
    return nn.Dense(x.shape[-1], kernel_init=dense_init, dtype=self.dtype, name='fc2')(y)


def _norm(dtype, name):
  return nn.LayerNorm(epsilon=LN_EPSILON, dtype=dtype, name=name)


class Block(nn.Module):
  """Pre-norm residual block: x + DropPath(mixer(LN(x))), then x + DropPath(MLP(LN(x))). The mixer is outlook
  attention on a (B, H, W, C) map (an Outlooker) or self-attention on (B, N, C) tokens (a Transformer block)."""
  num_heads: int
  mlp_ratio: float
  outlook: bool = False
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    mixer = OutlookAttention if self.outlook else SelfAttention
    y = mixer(self.num_heads, dtype=self.dtype, name='attn')(_norm(self.dtype, 'norm1')(x))
    x = x + StochasticDepth(self.drop_path)(y, train)
    y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.dtype, name='mlp')(_norm(self.dtype, 'norm2')(x))
    return x + StochasticDepth(self.drop_path)(y, train)


class ClassBlock(nn.Module):
  """Class-attention block: updates only the class token (x[:, 0]), from all tokens; the others pass through."""
  num_heads: int
  mlp_ratio: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cls = x[:, :1] + ClassAttention(self.num_heads, self.dtype, name='attn')(_norm(self.dtype, 'norm1')(x))
    cls = cls + Mlp(int(x.shape[-1] * self.mlp_ratio), self.dtype, name='mlp')(_norm(self.dtype, 'norm2')(cls))
    return jnp.concatenate([cls, x[:, 1:]], axis=1)


class PatchEmbed(nn.Module):
  """Stem: 7x7/2 conv, two 3x3 convs (each without bias, BN, ReLU), then a 4x4/4 projection: tokens at 1/8."""
  hidden_dim: int
  embed_dim: int
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, (k, s) in enumerate(((7, 2), (3, 1), (3, 1))):
      x = nn.Conv(self.hidden_dim, (k, k), (s, s), padding=same_padding(k), use_bias=False, kernel_init=conv_init,
                  dtype=self.dtype, name=f'conv{i + 1}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, dtype=self.dtype,
                       axis_name=self.bn_axis_name if train else None, name=f'bn{i + 1}')(x)
      x = nn.relu(x)
    k = PATCH_SIZE // 2
    return nn.Conv(self.embed_dim, (k, k), (k, k), padding='VALID', dtype=self.dtype, name='proj')(x)


def _box(lo, hi, n: int):
  """[n] bool, True on lo <= i < hi: a static shape whatever the (traced) bounds."""
  i = jnp.arange(n)
  return (i >= lo) & (i < hi)


def mix_token_box(key, grid: tuple[int, int]):
  """timm's `rand_bbox` on the (h, w) grid, traceable: lambda ~ Beta(1, 1), sides floor(n * sqrt(1 - lambda)),
  a uniform centre, clipped. Returns ((lo1, hi1), (lo2, hi2)) int32 bounds along rows and columns."""
  k_lam, *k_centre = jax.random.split(key, 3)
  cut = jnp.sqrt(1.0 - jax.random.beta(k_lam, 1.0, 1.0, dtype=jnp.float32))
  bounds = []
  for n, k in zip(grid, k_centre):
    side = jnp.floor(jnp.float32(n) * cut).astype(jnp.int32)
    centre = jax.random.randint(k, (), 0, n)
    bounds.append((jnp.clip(centre - side // 2, 0, n), jnp.clip(centre + (side + 1) // 2, 0, n)))
  return tuple(bounds)


class VOLO(nn.Module):
  """VOLO classifier (see the module docstring for the call contract). The VARIANTS set the architecture fields;
  smaller `layers`/`embed_dims`/... build test members. `layers[0]` outlookers at 1/8, then `layers[1:]`
  transformer stages at 1/16 (all of `embed_dims[1]` channels), then `num_class_blocks` class-attention blocks."""
  layers: Sequence[int] = VARIANTS['volo_d1']['layers']
  embed_dims: Sequence[int] = VARIANTS['volo_d1']['embed_dims']
  num_heads: Sequence[int] = VARIANTS['volo_d1']['num_heads']
  mlp_ratio: float = 3.0
  stem_hidden_dim: int = 64
  num_class_blocks: int = 2
  image_size: int | Sequence[int] = 224  # (H, W) or one side; sizes the position embedding
  num_classes: int = 1000
  drop_path_rate: float = 0.0
  mix_token: bool = True  # MixToken in training
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None  # a data-parallel trainer sets its axis: stem BN over the global batch
  dtype: Any = 'float32'  # computation dtype; parameters stay float32
  remat: bool = False  # recompute each block's activations in the backward pass: less memory, one more forward

  def check_config(self):
    size = _pairs(self.image_size)
    stride = PATCH_SIZE * POOLING_SCALE
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or s <= 0 or s % stride for s in size):
      raise UserError(f'VOLO image_size must be positive multiples of {stride} (an {PATCH_SIZE}x patch stem, then a '
                      f'{POOLING_SCALE}x downsample), got {self.image_size}; e.g. 224, 384, 448 or 512')
    n = len(self.layers)
    if n < 2 or len(self.embed_dims) != n or len(self.num_heads) != n or min(self.layers) < 1:
      raise UserError(f'VOLO layers, embed_dims and num_heads must be equally long (at least 2 stages, each with '
                      f'blocks), got {self.layers}, {self.embed_dims}, {self.num_heads}')
    if len(set(self.embed_dims[1:])) != 1:
      raise UserError(f'VOLO stages after the downsample share one width, got embed_dims {self.embed_dims}')
    bad = [(d, h) for d, h in zip(self.embed_dims, self.num_heads) if h < 1 or d % h]
    if bad:
      raise UserError(f'VOLO embed_dims must divide into num_heads: {bad}')
    if not 0.0 <= self.drop_path_rate < 1.0:
      raise UserError(f'drop_path_rate must lie in [0, 1), got {self.drop_path_rate}')

  @property
  def image_hw(self) -> tuple[int, int]:
    """The (H, W) that inputs must have."""
    return _pairs(self.image_size)

  @property
  def grid(self) -> tuple[int, int]:
    """The token grid after the downsample, which the position embedding and aux_logits have."""
    return tuple(s // (PATCH_SIZE * POOLING_SCALE) for s in self.image_hw)

  def drop_path_rates(self) -> list[list[float]]:
    """timm's schedule: linear in the block's index over all stages, but the outlookers (stage 0) get none."""
    total, start, rates = sum(self.layers), 0, []
    for s, n in enumerate(self.layers):
      rates.append([0.0 if s == 0 else self.drop_path_rate * (start + b) / (total - 1) for b in range(n)])
      start += n
    return rates

  @nn.compact
  def __call__(self, x, train: bool = False):
    size = self.image_hw
    if x.ndim != 4 or tuple(x.shape[1:3]) != size:
      raise UserError(f'VOLO built for image_size {size} got input of shape {tuple(x.shape)} (want [B, {size[0]}, '
                      f'{size[1]}, C]); set image_size to the input size (resize_pos_embed adapts weights)')
    dtype = as_dtype(self.dtype)
    dim0, dim = self.embed_dims[0], self.embed_dims[-1]
    grid = self.grid
    x = PatchEmbed(self.stem_hidden_dim, dim0, self.bn_momentum, self.bn_axis_name, dtype,
                   name='patch_embed')(x.astype(dtype), train)

    mixing = train and self.mix_token
    if mixing:
      (lo1, hi1), (lo2, hi2) = mix_token_box(self.make_rng('dropout'), grid)
      mask = _box(lo1, hi1, grid[0])[:, None] & _box(lo2, hi2, grid[1])[None, :]
      r = POOLING_SCALE  # the box in tokens before the downsample
      fine = _box(r * lo1, r * hi1, r * grid[0])[:, None] & _box(r * lo2, r * hi2, r * grid[1])[None, :]
      x = jnp.where(fine[None, :, :, None], x[::-1], x)

    rates = self.drop_path_rates()
    block = nn.remat(Block, static_argnums=(2,)) if self.remat else Block  # same variables either way
    for b in range(self.layers[0]):
      x = block(self.num_heads[0], self.mlp_ratio, outlook=True, dtype=dtype, name=f'stage1_block{b}')(x, train)
    x = nn.Conv(dim, (POOLING_SCALE,) * 2, (POOLING_SCALE,) * 2, padding='VALID', dtype=dtype,
                name='downsample')(x)
    pos = self.param('pos_embed', dense_init, (1, *grid, dim))
    x = (x + pos.astype(dtype)).reshape(x.shape[0], -1, dim)  # tokens, row-major over the grid
    for s in range(1, len(self.layers)):
      for b in range(self.layers[s]):
        x = block(self.num_heads[s], self.mlp_ratio, drop_path=rates[s][b], dtype=dtype,
                  name=f'stage{s + 1}_block{b}')(x, train)

    cls = self.param('cls_token', dense_init, (1, 1, dim))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(dtype), (x.shape[0], 1, dim)), x], axis=1)
    for b in range(self.num_class_blocks):
      x = ClassBlock(self.num_heads[-1], self.mlp_ratio, dtype, name=f'cls_block{b}')(x)
    x = _norm(dtype, 'norm')(x)
    dense = lambda name: nn.Dense(self.num_classes, kernel_init=dense_init, dtype=dtype, name=name)
    logits = dense('head')(x[:, 0]).astype(jnp.float32)
    aux = dense('aux_head')(x[:, 1:]).astype(jnp.float32)
    if not train:
      return logits + 0.5 * jnp.max(aux, axis=1)

    aux = aux.reshape(x.shape[0], *grid, self.num_classes)
    if mixing:  # swap the box back: aux_logits[i] then describes image i everywhere
      aux = jnp.where(mask[None, :, :, None], aux[::-1], aux)
      mask = mask.astype(jnp.float32)
    else:
      mask = jnp.zeros(grid, jnp.float32)
    return {'logits': logits, 'aux_logits': aux, 'mix_mask': mask, 'mix_lambda': 1.0 - jnp.mean(mask)}


def resize_pos_embed(tree, image_size):
  """Variables (or params) of a VOLO with the position embedding resized (bicubic, jax.image.resize) to the grid of
  `image_size`: fine-tuning at 384 from 224 weights. Everything else is shared across sizes. jax.image.resize's
  bicubic is Keys' a=-0.5 (torch's F.interpolate uses a=-0.75), so the resized table differs slightly from timm's."""
  grid = tuple(s // (PATCH_SIZE * POOLING_SCALE) for s in _pairs(image_size))
  if any(s <= 0 or s % (PATCH_SIZE * POOLING_SCALE) for s in _pairs(image_size)):
    raise UserError(f'image_size must be positive multiples of {PATCH_SIZE * POOLING_SCALE}, got {image_size}')
  has_collections = 'params' in tree
  params = tree['params'] if has_collections else tree
  pos = params['pos_embed']
  resized = jax.image.resize(pos, (1, *grid, pos.shape[-1]), 'bicubic').astype(pos.dtype)
  params = {**params, 'pos_embed': resized}
  return {**tree, 'params': params} if has_collections else params


# Every member's released weights at 224 (VOLO's repository, as timm ports them: volo_d*_224.sail_in1k) are evaluated
# at a 0.96 centre crop; `head` and `aux_head` both classify (token labelling's inference rule).
for _name, _config in VARIANTS.items():
  register_model(_name, VOLO, imagenet_card('volo', 224, 0.96, f'configs/volo.py:{_name[len("volo_"):]}-224',
                                            ('head', 'aux_head'), f'{_name}_224.sail_in1k'), **_config)
