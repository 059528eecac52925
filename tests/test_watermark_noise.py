"""zoo/watermark/noise.py: each layer against the real operation (Pillow, scipy), plus jit, shapes and gradients."""
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from PIL import Image, ImageFilter

from zoo.errors import UserError
from zoo.watermark import noise


def psnr(a, b):
  """PSNR in dB of two images on the [0, 1] scale."""
  error = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return 10 * np.log10(1.0 / error)


@pytest.fixture(scope='module')
def astronaut():
  """A natural 128x128 RGB image, uint8."""
  return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.BOX))


def as_batch(image_u8):
  return jnp.asarray(image_u8[None].astype(np.float32) / 255.0)


def small_images():
  return jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))


def pillow_float(image_u8, operation):
  """Apply a Pillow geometric `operation` channel by channel in float ('F') mode: no 8-bit rounding in the way."""
  channels = [operation(Image.fromarray(image_u8[..., c].astype(np.float32) / 255.0, 'F')) for c in range(3)]
  return np.stack([np.asarray(c) for c in channels], axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# All layers


# 'random' differentiates through jax.lax.switch; two cheap branches keep compilation short.
@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(noise.NOISE_LAYERS) + ['random'])
def test_layer_keeps_shape_jits_and_has_gradients(name):
  if name == 'random':
    layer = functools.partial(noise.random_noise, names=('blur', 'jpeg'))
  else:
    layer = noise.NOISE_LAYERS[name]
  images = small_images()
  key = jax.random.key(3)

  @jax.jit
  def output_and_gradient(x):  # one compilation for both: the slow part of this test
    out, pullback = jax.vjp(lambda y: layer(y, key), x)
    return out, pullback(jnp.ones_like(out))[0]  # the gradient of out.sum()

  out, grad = output_and_gradient(images)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_identity_is_exact():
  images = small_images()
  np.testing.assert_array_equal(noise.identity(images, jax.random.key(0)), images)


# ----------------------------------------------------------------------------------------------------------------------
# JPEG


@pytest.mark.parametrize('quality', [1, 10, 37, 50, 90, 100])
def test_quantisation_tables_are_the_ones_pillow_writes(quality):
  buffer = io.BytesIO()
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, 'JPEG', quality=quality)
  written = Image.open(buffer).quantization
  luma, chroma = noise.quantisation_tables(quality)
  np.testing.assert_array_equal(luma, np.reshape(written[0], (8, 8)))
  np.testing.assert_array_equal(chroma, np.reshape(written[1], (8, 8)))


def test_dct_matrix_is_orthonormal():
  np.testing.assert_allclose(noise._DCT @ noise._DCT.T, np.eye(8), atol=1e-6)


# Measured on this 128x128 astronaut: approximation vs Pillow 41.5 dB (q50), 44.1 dB (q90); input vs Pillow 27.3 dB
# (q50), 32.7 dB (q90). With nearest instead of libjpeg's fancy chroma upsampling it drops to 38.2 / 37.1 dB.
@pytest.mark.slow
@pytest.mark.parametrize('quality, min_psnr', [(50, 40.5), (90, 43.0)])
def test_jpeg_matches_pillow(astronaut, quality, min_psnr):
  buffer = io.BytesIO()
  Image.fromarray(astronaut).save(buffer, 'JPEG', quality=quality)
  pillow = np.asarray(Image.open(buffer)).astype(np.float32) / 255.0
  images = as_batch(astronaut)
  out = np.asarray(noise.jpeg_at_quality(images, quality))[0]
  assert psnr(out, pillow) > min_psnr
  assert psnr(out, pillow) > psnr(images[0], pillow) + 10  # it removes what JPEG removes, not just anything


@pytest.mark.slow
def test_jpeg_draws_an_integer_quality_in_range():
  images = small_images()
  np.testing.assert_allclose(noise.jpeg(images, jax.random.key(1), quality_range=(70, 70)),
                             noise.jpeg_at_quality(images, 70), atol=1e-6)
  at_quality = jax.jit(noise.jpeg_at_quality)
  candidates = [at_quality(images, q) for q in range(60, 66)]
  draw = jax.jit(functools.partial(noise.jpeg, quality_range=(60, 65)))
  for seed in range(4):
    assert any(np.allclose(draw(images, jax.random.key(seed)), c, atol=1e-5) for c in candidates)


def test_jpeg_rejects_sizes_that_are_not_multiples_of_16():
  with pytest.raises(UserError, match='multiples of 16'):
    noise.jpeg_at_quality(jnp.zeros((1, 24, 32, 3)), 50)


def test_differentiable_round_is_close_to_round_with_gradient():
  x = jnp.linspace(-3, 3, 101)
  np.testing.assert_array_less(jnp.abs(noise.differentiable_round(x) - jnp.round(x)), 0.125 + 1e-6)
  np.testing.assert_allclose(jax.grad(noise.differentiable_round)(2.25), 3 * 0.25 ** 2)


# ----------------------------------------------------------------------------------------------------------------------
# Blur


@pytest.mark.slow
@pytest.mark.parametrize('sigma', [0.5, 2.0])
def test_blur_matches_scipy_and_pillow(astronaut, sigma):
  images = as_batch(astronaut)
  out = np.asarray(noise.blur_with_sigma(images, sigma, radius=6))[0]
  reference = scipy.ndimage.gaussian_filter(images[0], (sigma, sigma, 0), mode='nearest', truncate=6 / sigma)
  assert psnr(out, reference) > 100  # measured ~143-145 dB: the same filter, float32 rounding only
  # Pillow approximates the Gaussian by three box blurs and rounds to 8 bits: measured 50.6 dB (0.5), 48.6 dB (2.0).
  pillow = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(sigma))) / 255.0
  assert psnr(out, pillow) > 47


@pytest.mark.slow
def test_gaussian_blur_draws_sigma_in_range():
  images = small_images()
  np.testing.assert_allclose(noise.gaussian_blur(images, jax.random.key(0), sigma_range=(1.5, 1.5)),
                             noise.blur_with_sigma(images, 1.5, radius=5), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Crop and resize


@pytest.mark.parametrize('fraction, top, left', [(0.5, 0, 0), (0.7, 17, 30), (0.9, 12, 3)])
def test_crop_at_matches_pillow(astronaut, fraction, top, left):
  side = round(128 * fraction)
  out = np.asarray(noise.crop_at(as_batch(astronaut), fraction, top, left))[0]

  def pillow_crop(image):
    return image.crop((left, top, left + side, top + side)).resize((128, 128), Image.BILINEAR)

  assert psnr(out, pillow_float(astronaut, pillow_crop)) > 100  # measured ~152 dB: same filter and pixel centres
  assert psnr(out, np.asarray(pillow_crop(Image.fromarray(astronaut))) / 255.0) > 54  # 8-bit Pillow: 55.5-57.4 dB


@pytest.mark.slow
def test_crop_takes_a_window_of_the_requested_size():
  images = small_images()
  at = jax.jit(noise.crop_at, static_argnums=1)
  windows = [at(images, 0.75, top, left) for top in range(9) for left in range(9)]
  crop = jax.jit(functools.partial(noise.crop, fraction_range=(0.75, 0.75)))
  outputs = [crop(images, jax.random.key(seed)) for seed in range(3)]
  for out in outputs:
    assert sum(np.allclose(out, w, atol=1e-6) for w in windows) == 1
  assert not np.allclose(outputs[0], outputs[1])  # the offset is random


@pytest.mark.parametrize('scale', [0.5, 0.75, 1.5, 2.0])
def test_resize_at_matches_pillow(astronaut, scale):
  side = round(128 * scale)
  out = np.asarray(noise.resize_at(as_batch(astronaut), scale))[0]

  def pillow_resize(image):
    return image.resize((side, side), Image.BILINEAR).resize((128, 128), Image.BILINEAR)

  assert psnr(out, pillow_float(astronaut, pillow_resize)) > 100  # measured 129-151 dB
  assert psnr(out, np.asarray(pillow_resize(Image.fromarray(astronaut))) / 255.0) > 52  # 8-bit Pillow: 53.6-56.8 dB
  assert psnr(out, astronaut / 255.0) < 30  # and it does lose detail (22.4 dB at 0.5, 28.5 dB at 2.0)


# ----------------------------------------------------------------------------------------------------------------------
# Random choice


def test_random_noise_picks_every_layer_uniformly(monkeypatch):
  """Stand-in layers that add their index plus a draw from their key: cheap to compile, and they show who ran."""
  def stand_in(index):
    return lambda images, rng: images + index + 0.1 * jax.random.uniform(rng)

  for index, name in enumerate(noise.NOISE_LAYERS):
    monkeypatch.setitem(noise.NOISE_LAYERS, name, stand_in(index))
  apply = jax.jit(noise.random_noise)
  images = jnp.zeros((1, 2, 2, 3))
  counts = np.zeros(len(noise.NOISE_LAYERS))
  for seed in range(100):
    key = jax.random.key(seed)
    out = float(apply(images, key)[0, 0, 0, 0])
    index = int(out)
    assert out == pytest.approx(index + 0.1 * float(jax.random.uniform(jax.random.split(key)[1])))
    counts[index] += 1
  assert counts.min() >= 10  # uniform: 20 expected each


def test_random_noise_applies_the_real_layer():
  images = small_images()
  apply = jax.jit(functools.partial(noise.random_noise, names=('identity', 'blur')))
  blur = jax.jit(noise.gaussian_blur)
  picked = set()
  for seed in range(6):
    key = jax.random.key(seed)
    out = apply(images, key)
    if np.array_equal(out, images):
      picked.add('identity')
    else:
      np.testing.assert_allclose(out, blur(images, jax.random.split(key)[1]), atol=1e-6)
      picked.add('blur')
  assert picked == {'identity', 'blur'}


def test_random_noise_restricted_to_names():
  images = small_images()
  for seed in range(5):
    out = noise.random_noise(images, jax.random.key(seed), names=('identity',))
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize('names', [('jpeg', 'sharpen'), ()])
def test_random_noise_rejects_unknown_names(names):
  with pytest.raises(UserError, match='choose from'):
    noise.random_noise(small_images(), jax.random.key(0), names=names)
