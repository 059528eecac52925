"""Differentiable noise layers: the post-processing a watermark must survive, applied between encoder and decoder.

HiDDeN (Zhu et al. 2018) and FaceGuard (Yang et al.) train the encoder/decoder pair end to end through a random
distortion, so each layer here imitates a real operation (JPEG, blur, crop, resize) closely enough that robustness
learnt against it carries over to the real thing, while staying differentiable w.r.t. the image.

Images are float32 NHWC RGB in [0, 1] with static H, W. Every layer takes `(images, rng)`, draws ONE setting per call
(shared by the whole batch) and returns an array of the input's shape and dtype, so it jits and sits under
`jax.lax.switch`. Settings that change intermediate shapes (crop fraction, resize scale) come from a small static set
spanning the requested range. Crops and resizes end with a resize back to [H, W]: the watermark API resizes every input
to the model's resolution, so that is what the decoder sees after a real crop or resize.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import UserError

# Annex K of the JPEG standard (ITU T.81), rows = vertical frequency: the tables libjpeg scales by quality.
_LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)
_CHROMA_TABLE = np.full((8, 8), 99, np.float32)
_CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

# JFIF full-range RGB -> YCbCr (rows: Y, Cb, Cr); chroma gets +128 on the 0..255 scale.
_RGB_TO_YCBCR = np.array([
    [0.299, 0.587, 0.114],
    [-0.168736, -0.331264, 0.5],
    [0.5, -0.418688, -0.081312]], np.float32)
_YCBCR_TO_RGB = np.array([
    [1.0, 0.0, 1.402],
    [1.0, -0.344136, -0.714136],
    [1.0, 1.772, 0.0]], np.float32)
_JPEG_MULTIPLE = 16  # 8x8 blocks on chroma planes halved by 4:2:0 subsampling


def _dct_matrix(n=8):
  """Orthonormal DCT-II matrix M[k, i] = a_k cos((2i + 1) k pi / 2n); M @ x transforms a length-n signal."""
  k = np.arange(n)[:, None]
  i = np.arange(n)[None, :]
  scale = np.where(k == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
  return (scale * np.cos((2 * i + 1) * k * math.pi / (2 * n))).astype(np.float32)


_DCT = _dct_matrix()


def _check_images(images):
  if images.ndim != 4 or images.shape[-1] != 3:
    raise UserError(f'noise layers take NHWC RGB images [B, H, W, 3], got shape {images.shape}')


def _straight_through_clip(x):
  """clip(x, 0, 1) in the forward pass, identity in the backward pass.

  A plain clip would zero the gradient wherever the operation overshoots (JPEG ringing at edges, saturated highlights),
  which are exactly the pixels where the encoder most needs to learn what survives.
  """
  return x + jax.lax.stop_gradient(jnp.clip(x, 0.0, 1.0) - x)


def identity(images, rng):
  """No distortion: keeps the decoder honest on clean images."""
  del rng
  return images


# ----------------------------------------------------------------------------------------------------------------------
# JPEG


def differentiable_round(x):
  """round(x) + (x - round(x))**3 (Shin & Song 2017): equals rounding to within 0.125, gradient 3 (x - round(x))**2."""
  rounded = jnp.round(x)
  return rounded + (x - rounded) ** 3


def quantisation_tables(quality):
  """IJG (libjpeg / Pillow) luminance and chrominance tables at `quality` (1..100, may be traced): two [8, 8] arrays."""
  quality = jnp.clip(jnp.asarray(quality, jnp.float32), 1.0, 100.0)
  scale = jnp.where(quality < 50, jnp.floor(5000.0 / quality), 200.0 - 2.0 * quality)
  tables = [jnp.clip(jnp.floor((t * scale + 50.0) / 100.0), 1.0, 255.0) for t in (_LUMA_TABLE, _CHROMA_TABLE)]
  return tables[0], tables[1]


def _quantise_blocks(plane, table):
  """Level-shifted [B, H, W] plane (H, W multiples of 8) -> 8x8 DCT, (soft) quantise, dequantise, inverse DCT."""
  b, h, w = plane.shape
  blocks = plane.reshape(b, h // 8, 8, w // 8, 8)
  coefficients = jnp.einsum('ki,bnimj,lj->bnkml', _DCT, blocks, _DCT)
  coefficients = differentiable_round(coefficients / table[:, None, :]) * table[:, None, :]
  blocks = jnp.einsum('ki,bnkml,lj->bnimj', _DCT, coefficients, _DCT)
  return blocks.reshape(b, h, w)


def _subsample(plane):
  """4:2:0 encoder side: average each 2x2 block of a [B, H, W] plane."""
  b, h, w = plane.shape
  return plane.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def _upsample(plane):
  """4:2:0 decoder side: libjpeg's 'fancy' upsampling, a 3/4-1/4 triangle filter with replicated edges.

  That is bilinear interpolation at half-pixel centres, which jax.image.resize does exactly.
  """
  b, h, w = plane.shape
  return jax.image.resize(plane, (b, 2 * h, 2 * w), method='linear')


def jpeg_at_quality(images, quality):
  """JPEG compression and decompression at `quality` (may be traced), as Pillow/libjpeg do it with default settings.

  JFIF YCbCr, 4:2:0 chroma, 8x8 orthonormal DCT, IJG tables; the only departures from the real codec are the soft
  rounding of coefficients, float arithmetic and no rounding of the output to 8 bits. H and W must be multiples of 16.
  """
  _check_images(images)
  _, h, w, _ = images.shape
  if h % _JPEG_MULTIPLE or w % _JPEG_MULTIPLE:
    raise UserError(f'jpeg noise needs H and W that are multiples of {_JPEG_MULTIPLE} (8x8 blocks on 4:2:0 chroma), '
                    f'got {h}x{w}; resize images to such a size')
  luma_table, chroma_table = quantisation_tables(quality)
  ycbcr = jnp.einsum('bhwc,kc->bhwk', images * 255.0, _RGB_TO_YCBCR)
  luma = _quantise_blocks(ycbcr[..., 0] - 128.0, luma_table) + 128.0
  chroma = [_upsample(_quantise_blocks(_subsample(ycbcr[..., c]), chroma_table)) for c in (1, 2)]
  ycbcr = jnp.stack([luma, chroma[0], chroma[1]], axis=-1)
  rgb = jnp.einsum('bhwk,ck->bhwc', ycbcr, _YCBCR_TO_RGB) / 255.0
  return _straight_through_clip(rgb).astype(images.dtype)


def jpeg(images, rng, quality_range=(50, 90)):
  """JPEG at one integer quality per call, uniform in `quality_range` (inclusive). H, W: multiples of 16."""
  low, high = quality_range
  quality = jax.random.randint(rng, (), low, high + 1)
  return jpeg_at_quality(images, quality)


# ----------------------------------------------------------------------------------------------------------------------
# Gaussian blur


def _blur_axis(images, weights, axis):
  """Correlate `images` with 1-D `weights` (odd length) along `axis`, padding by replicating the edge pixels."""
  radius = (weights.shape[0] - 1) // 2
  size = images.shape[axis]
  pad = [(0, 0)] * images.ndim
  pad[axis] = (radius, radius)
  padded = jnp.pad(images, pad, mode='edge')
  taps = [jax.lax.slice_in_dim(padded, k, k + size, axis=axis) * weights[k] for k in range(weights.shape[0])]
  return sum(taps)


def blur_with_sigma(images, sigma, radius=6):
  """Separable Gaussian blur with standard deviation `sigma` (may be traced) over 2 * `radius` + 1 taps.

  The kernel is truncated at `radius` and renormalised; radius 6 is 3 sigma for sigma 2 (0.3% of the mass cut).
  Edges are replicated, as in Pillow's GaussianBlur (whose box-blur approximation clamps to the border pixel).
  """
  _check_images(images)
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  weights = weights / weights.sum()
  return _blur_axis(_blur_axis(images, weights, axis=1), weights, axis=2)


def gaussian_blur(images, rng, sigma_range=(0.5, 2.0)):
  """Gaussian blur with one sigma per call, uniform in `sigma_range`; the kernel reaches 3 sigma of the largest."""
  low, high = sigma_range
  sigma = jax.random.uniform(rng, (), minval=low, maxval=high)
  return blur_with_sigma(images, sigma, radius=max(1, math.ceil(3 * high)))


# ----------------------------------------------------------------------------------------------------------------------
# Crop and resize (each ending back at [H, W])


def _resize_to(images, height, width):
  """Antialiased bilinear resize (Pillow's BILINEAR: triangle filter widened when shrinking, half-pixel centres)."""
  b, _, _, c = images.shape
  return jax.image.resize(images, (b, height, width, c), method='linear', antialias=True)


def _scaled(size, factor):
  return max(1, round(size * factor))


def crop_at(images, fraction, top, left):
  """Keep a `fraction` (static) of each side from (`top`, `left`) (may be traced), then resize back to [H, W].

  Like jax.lax.dynamic_slice, an offset that would run past the border is moved back inside the image.
  """
  _check_images(images)
  b, h, w, c = images.shape
  window = jax.lax.dynamic_slice(images, (0, top, left, 0), (b, _scaled(h, fraction), _scaled(w, fraction), c))
  return _resize_to(window, h, w)


def crop(images, rng, fraction_range=(0.5, 0.9), num_fractions=5):
  """Crop at a random position keeping one of `num_fractions` side fractions spanning `fraction_range`, per call."""
  _check_images(images)
  _, h, w, _ = images.shape
  fraction_key, top_key, left_key = jax.random.split(rng, 3)

  def branch(fraction):
    def cut(images):
      top = jax.random.randint(top_key, (), 0, h - _scaled(h, fraction) + 1)
      left = jax.random.randint(left_key, (), 0, w - _scaled(w, fraction) + 1)
      return crop_at(images, fraction, top, left)
    return cut

  fractions = np.linspace(*fraction_range, num_fractions)
  index = jax.random.randint(fraction_key, (), 0, num_fractions)
  return jax.lax.switch(index, [branch(float(f)) for f in fractions], images)


def resize_at(images, scale):
  """Resize to `scale` (static) times each side, then back to [H, W]: the detail a real rescale loses or blurs."""
  _check_images(images)
  _, h, w, _ = images.shape
  return _resize_to(_resize_to(images, _scaled(h, scale), _scaled(w, scale)), h, w)


def resize(images, rng, scale_range=(0.5, 2.0), num_scales=8):
  """Resize there and back at one of `num_scales` scales, geometrically spaced over `scale_range`, per call."""
  scales = np.geomspace(*scale_range, num_scales)
  index = jax.random.randint(rng, (), 0, num_scales)
  return jax.lax.switch(index, [lambda x, s=float(s): resize_at(x, s) for s in scales], images)


# ----------------------------------------------------------------------------------------------------------------------
# Random choice


NOISE_LAYERS = {'identity': identity, 'jpeg': jpeg, 'blur': gaussian_blur, 'crop': crop, 'resize': resize}


def random_noise(images, rng, names=tuple(NOISE_LAYERS)):
  """Apply one of the `names` layers, chosen uniformly per call, with default settings.

  `rng` splits into (choice key, layer key); the chosen layer gets the layer key, so
  `random_noise(x, rng)` equals `NOISE_LAYERS[name](x, jax.random.split(rng)[1])` for the chosen name.
  """
  unknown = [name for name in names if name not in NOISE_LAYERS]
  if unknown or not names:
    problem = f'unknown noise layer(s) {unknown}' if unknown else 'no noise layer named'
    raise UserError(f'{problem}; choose from {sorted(NOISE_LAYERS)}')
  choice_key, layer_key = jax.random.split(rng)
  index = jax.random.randint(choice_key, (), 0, len(names))
  return jax.lax.switch(index, [NOISE_LAYERS[name] for name in names], images, layer_key)
