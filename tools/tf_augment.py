"""The TensorFlow reference of the zoo's augmentations: the tf.data input's ops until 2026-12 (then
zoo/data/augment.py). zoo/data/randaugment.py and transforms.py, which replaced them, are tested against these
(tests/test_randaugment.py, tests/test_transforms.py), and tools/input_speed.py times the former tf.data input with
them. Needs TensorFlow, which the zoo itself no longer imports.

Random only through stateless ops.

Every random function takes `seed`, a shape-[2] int32/int64 tensor, and derives what it needs from it with
`stateless_split` / `stateless_fold_in`. The output is then a pure function of (seed, image): it does not depend on
the order in which tf.data's parallel map visits examples, nor on what ran before, which is what lets a resumed run
reproduce the batches of an uninterrupted one. Never use tf.random.uniform & co. here: their hidden state breaks that.

Images are HxWxC with C = 1 or 3, uint8 (0..255) unless a docstring says float. Float images stay on the 0..255 scale
until `normalize`, whose mean and std are therefore in 0..255 units too.

RandAugment magnitudes follow the convention of the paper's code and of timm: an op's range is reached at magnitude
`LEVEL_DENOM` = 10 (Rotate 30 degrees, Shear 0.3, Translate 0.45 of the side, enhance factor 1 +- 0.9, Solarize
threshold 0, Posterize 4 bits). Magnitudes above 10, up to `MAX_MAGNITUDE` = 30 (the paper's sweeps), extrapolate
linearly, clamped where an op would stop making sense; ResNet-RS's M=15 relies on that. Solarize and Posterize grow
stronger with magnitude, as the paper describes them (timm's 'increasing' variants; the paper's TF code inverts both).
Pixel arithmetic matches PIL's exactly, so results agree with PIL-based (timm) pipelines where the op is the same.
"""
import functools
import math
from typing import Sequence

import tensorflow as tf

LEVEL_DENOM = 10.0  # magnitude at which each op reaches the range quoted in the module docstring
MAX_MAGNITUDE = 30.0  # magnitudes (also those drawn with magnitude_std) are clipped to [0, MAX_MAGNITUDE]
FILL_VALUE = 128.0  # grey, where geometric ops uncover the canvas
TRANSLATE_PCT = 0.45  # timm's translate_pct: the shift at LEVEL_DENOM as a fraction of the image side

_split = tf.random.experimental.stateless_split


# ----------------------------------------------------------------------------------------------------------------------
# Crops, flips, eval resize, normalisation.


def sample_crop_box(image_shape, seed, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3), max_attempts=10):
  """Inception-style crop box for an image of `image_shape` ([H, W] or [H, W, C]): (offset [y, x], size [h, w]).

  Depends only on the shape and the seed, so the box is the same whether it is cut from encoded JPEG bytes or from
  the decoded image. After `max_attempts` boxes that miss the constraints it returns the whole image.
  """
  shape = tf.cast(tf.convert_to_tensor(image_shape), tf.int32)
  shape = tf.concat([shape[:2], [1]], axis=0)  # the op wants [H, W, C]; C does not matter for the box
  whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, whole, seed=seed, min_object_covered=0.0, aspect_ratio_range=list(aspect_range),
      area_range=list(area_range), max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
  return begin[:2], size[:2]


def _resize(image, size, channels, antialias=False):
  out = tf.image.resize(image, [size, size], method='bilinear', antialias=antialias)
  out = tf.cast(out, tf.float32)
  out.set_shape([size, size, channels])
  return out


def _channels(image):
  channels = image.shape[-1]
  if channels is None:
    raise ValueError('the channel count of the image must be known statically (set_shape or decode with channels=)')
  return channels


def inception_crop(image, seed, size: int, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3), max_attempts=10):
  """Random resized crop (Szegedy et al. 2015) of a decoded image: float32 [size, size, C] on the 0..255 scale."""
  image = tf.convert_to_tensor(image)
  channels = _channels(image)
  offset, crop = sample_crop_box(tf.shape(image), seed, area_range, aspect_range, max_attempts)
  cropped = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([crop, [-1]], 0))
  return _resize(cropped, size, channels)


def decode_and_inception_crop(encoded, seed, size: int, channels: int = 3, area_range=(0.08, 1.0),
                              aspect_range=(3 / 4, 4 / 3), max_attempts=10):
  """`inception_crop` from encoded bytes; JPEGs decode only the crop window (much cheaper on big ImageNet photos).

  Other formats (PNG, BMP, first frame of a GIF) are decoded whole, then cropped. For the same seed both paths cut the
  same box that `inception_crop` would cut from the decoded image.
  """
  encoded = tf.convert_to_tensor(encoded, tf.string)

  def from_jpeg():
    offset, crop = sample_crop_box(tf.image.extract_jpeg_shape(encoded), seed, area_range, aspect_range, max_attempts)
    window = tf.concat([offset, crop], axis=0)
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

  def from_other():
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    offset, crop = sample_crop_box(tf.shape(image), seed, area_range, aspect_range, max_attempts)
    return tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([crop, [-1]], 0))

  cropped = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, from_other)
  cropped.set_shape([None, None, channels])
  return _resize(cropped, size, channels)


def random_flip(image, seed):
  """Mirrors left-right with probability 1/2; any dtype."""
  image = tf.convert_to_tensor(image)
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def resize_and_center_crop(image, size: int, crop_pct: float = 0.875, antialias: bool = False):
  """Eval transform: shorter side to floor(size / crop_pct), then the central size x size; float32 on 0..255.

  Bilinear like the training crop. The longer side scales to floor(long * short_target / short), as torchvision's
  Resize does; an odd surplus puts the extra pixel after the crop (bottom / right).
  """
  if not 0.0 < crop_pct <= 1.0:
    raise ValueError(f'crop_pct must be in (0, 1], got {crop_pct}')
  image = tf.convert_to_tensor(image)
  channels = _channels(image)
  target = int(math.floor(size / crop_pct))
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  short = tf.minimum(h, w)
  new_h = tf.where(h <= w, target, h * target // short)
  new_w = tf.where(h <= w, w * target // short, target)
  resized = tf.image.resize(image, tf.stack([new_h, new_w]), method='bilinear', antialias=antialias)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  out = tf.cast(tf.slice(resized, tf.stack([top, left, 0]), [size, size, channels]), tf.float32)
  out.set_shape([size, size, channels])
  return out


def normalize(image, mean: Sequence[float], std: Sequence[float]):
  """(image - mean) / std per channel, float32. mean and std are in the image's 0..255 units.

  The ImageNet statistics are therefore (0.485, 0.456, 0.406) * 255 and (0.229, 0.224, 0.225) * 255.
  """
  image = tf.cast(image, tf.float32)
  mean, std = [float(m) for m in mean], [float(s) for s in std]
  channels = image.shape[-1]
  if len(mean) != len(std) or (channels is not None and len(mean) not in (1, channels)):
    raise ValueError(f'normalize: {len(mean)} means and {len(std)} stds for a {channels}-channel image')
  if min(std) <= 0:
    raise ValueError(f'normalize: std must be positive, got {std}')
  return (image - tf.constant(mean)) / tf.constant(std)


def random_erasing(image, seed, probability: float = 0.25, area_range=(0.02, 1 / 3), aspect_range=(0.3, 1 / 0.3),
                   max_attempts: int = 10):
  """Random Erasing (Zhong et al. 2017) as timm's mode='pixel', one rectangle: with `probability`, replaces a box of
  area_range of the image and log-uniform aspect (h / w) with N(0, 1) noise per pixel and channel.

  Meant for normalised float images, where N(0, 1) looks like the data's own spread. Of `max_attempts` candidate
  boxes the first that fits is used; if none fits, the image is returned unchanged.
  """
  image = tf.convert_to_tensor(image)
  if not image.dtype.is_floating:
    raise ValueError(f'random_erasing expects a normalised float image, got {image.dtype.name}')
  seeds = _split(seed, 6)
  shape = tf.shape(image)
  h_img, w_img = shape[0], shape[1]
  area = tf.cast(h_img * w_img, tf.float32)
  target = tf.random.stateless_uniform([max_attempts], seeds[0], area_range[0], area_range[1]) * area
  log_aspect = tf.random.stateless_uniform([max_attempts], seeds[1], math.log(aspect_range[0]),
                                           math.log(aspect_range[1]))
  aspect = tf.exp(log_aspect)
  h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
  w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
  fits = (h < h_img) & (w < w_img)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)  # index of the first True (0 if none)
  h, w = h[first], w[first]
  top = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(h_img - h + 1, 1), dtype=tf.int32)
  left = tf.random.stateless_uniform([], seeds[3], 0, tf.maximum(w_img - w + 1, 1), dtype=tf.int32)
  erase = (tf.random.stateless_uniform([], seeds[4]) < probability) & tf.reduce_any(fits)
  rows = tf.range(h_img)
  cols = tf.range(w_img)
  in_rows = (rows >= top) & (rows < top + h)
  in_cols = (cols >= left) & (cols < left + w)
  mask = in_rows[:, None] & in_cols[None, :] & erase
  noise = tf.random.stateless_normal(shape, seeds[5], dtype=image.dtype)
  return tf.where(mask[:, :, None], noise, image)


# ----------------------------------------------------------------------------------------------------------------------
# RandAugment operations. Each takes a uint8 image and a signed float magnitude and returns a uint8 image of the same
# shape; unsigned ops use |magnitude|. Pixel arithmetic follows PIL's (which timm and the paper's code mirror).


def _level(magnitude):
  """Fraction of an op's range: magnitude / LEVEL_DENOM, keeping the sign."""
  return tf.cast(magnitude, tf.float32) / LEVEL_DENOM


def _to_uint8(x):
  return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _grey(image_f):
  """PIL's 'L' conversion (ITU-R 601-2 luma), rounded to integers; [H, W, 1] float."""
  if image_f.shape[-1] == 1:
    return image_f
  weights = tf.constant([0.299, 0.587, 0.114])
  return tf.round(tf.reduce_sum(image_f * weights, axis=-1, keepdims=True))


def _blend(degenerate, image_f, factor):
  """PIL's Image.blend(degenerate, image, factor), truncating as PIL does: 1 is the image, >1 extrapolates."""
  return tf.cast(tf.clip_by_value(tf.floor(degenerate + factor * (image_f - degenerate)), 0.0, 255.0), tf.uint8)


def _enhance_factor(magnitude):
  """timm's increasing enhance mapping: 1 +- 0.9 at LEVEL_DENOM, never below 0.1."""
  return tf.maximum(0.1, 1.0 + _level(magnitude) * 0.9)


def _identity(image, magnitude):
  del magnitude
  return image


def _auto_contrast(image, magnitude):
  """Stretches each channel to span 0..255; a flat channel is left alone."""
  del magnitude
  x = tf.cast(image, tf.float32)
  lo = tf.reduce_min(x, axis=[0, 1])
  hi = tf.reduce_max(x, axis=[0, 1])
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  stretched = tf.floor((x - lo) * scale)
  return tf.where(hi > lo, _to_uint8(stretched), image)


def _equalize(image, magnitude):
  """PIL's ImageOps.equalize per channel: a look-up table from the cumulative histogram, spread over 0..255."""
  del magnitude
  channels = tf.shape(image)[-1]
  values = tf.cast(image, tf.int32)
  flat = tf.reshape(values + 256 * tf.range(channels), [-1])
  hist = tf.reshape(tf.math.bincount(flat, minlength=256 * channels, maxlength=256 * channels), [channels, 256])
  # PIL's step leaves out the count of the highest occupied level.
  last_level = 255 - tf.argmax(tf.cast(tf.reverse(hist, axis=[1]) > 0, tf.int32), axis=1, output_type=tf.int32)
  last_count = tf.gather(hist, last_level, batch_dims=1)
  step = (tf.reduce_sum(hist, axis=1) - last_count) // 255
  safe_step = tf.maximum(step, 1)[:, None]
  lut = (tf.cumsum(hist, axis=1, exclusive=True) + safe_step // 2) // safe_step
  lut = tf.where(step[:, None] > 0, tf.minimum(lut, 255), tf.range(256)[None, :])  # step 0: leave as is
  out = tf.gather(tf.reshape(lut, [-1]), values + 256 * tf.range(channels))  # channel c reads table c
  return tf.cast(out, tf.uint8)


def _solarize(image, magnitude):
  """Inverts pixels at or above a threshold that falls from 256 (no-op) at magnitude 0 to 0 (full invert) at 10."""
  threshold = tf.clip_by_value(256.0 - tf.abs(_level(magnitude)) * 256.0, 0.0, 256.0)
  x = tf.cast(image, tf.float32)
  return tf.where(x >= threshold, 255 - image, image)


def _posterize(image, magnitude):
  """Keeps the top 8 - floor(4 * |m| / 10) bits (8 at 0, 4 at 10), never fewer than 1."""
  bits = 8 - tf.cast(tf.floor(tf.abs(_level(magnitude)) * 4.0), tf.int32)
  shift = tf.cast(8 - tf.clip_by_value(bits, 1, 8), tf.uint8)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def _color(image, magnitude):
  """Saturation: blends with the grey image. A grey (1-channel) image has no colour to change."""
  if image.shape[-1] == 1:
    return image
  x = tf.cast(image, tf.float32)
  return _blend(_grey(x), x, _enhance_factor(magnitude))


def _contrast(image, magnitude):
  """Blends with a flat image at the mean grey level (PIL's ImageEnhance.Contrast)."""
  x = tf.cast(image, tf.float32)
  mean = tf.floor(tf.reduce_mean(_grey(x)) + 0.5)
  return _blend(mean, x, _enhance_factor(magnitude))


def _brightness(image, magnitude):
  """Blends with black, i.e. scales the pixel values."""
  x = tf.cast(image, tf.float32)
  return _blend(0.0, x, _enhance_factor(magnitude))


def _sharpness(image, magnitude):
  """Blends with PIL's SMOOTH-filtered image (3x3 kernel, centre 5, others 1, over 13); the border stays as is."""
  x = tf.cast(image, tf.float32)
  channels = tf.shape(image)[-1]
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.round(tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], 'VALID')[0])
  shape = tf.shape(x)
  interior = tf.pad(tf.ones(shape[:2] - 2, tf.bool), [[1, 1], [1, 1]])
  smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(interior[:, :, None], smooth, x)
  return _blend(degenerate, x, _enhance_factor(magnitude))


def _transform(image, matrix):
  """Resamples with the projective map `matrix` (8 numbers, output pixel -> input pixel), bilinear, grey fill."""
  x = tf.cast(image, tf.float32)[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=x, transforms=tf.cast(tf.reshape(matrix, [1, 8]), tf.float32), output_shape=tf.shape(image)[:2],
      fill_value=FILL_VALUE, interpolation='BILINEAR', fill_mode='CONSTANT')
  return _to_uint8(out[0])


def _rotate(image, magnitude):
  """Rotates about the image centre, 30 degrees at magnitude 10."""
  theta = _level(magnitude) * (30.0 * math.pi / 180.0)
  shape = tf.cast(tf.shape(image), tf.float32)
  cy, cx = (shape[0] - 1.0) / 2.0, (shape[1] - 1.0) / 2.0
  cos, sin = tf.cos(theta), tf.sin(theta)
  matrix = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])
  return _transform(image, matrix)


def _shear_x(image, magnitude):
  """x_in = x + s * y (about the top-left corner, as PIL), s = 0.3 at magnitude 10."""
  s = _level(magnitude) * 0.3
  return _transform(image, tf.stack([1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def _shear_y(image, magnitude):
  s = _level(magnitude) * 0.3
  return _transform(image, tf.stack([1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0]))


def _translate_x(image, magnitude):
  """Shifts by TRANSLATE_PCT of the width at magnitude 10 (positive magnitude moves the content left)."""
  t = _level(magnitude) * TRANSLATE_PCT * tf.cast(tf.shape(image)[1], tf.float32)
  return _transform(image, tf.stack([1.0, 0.0, t, 0.0, 1.0, 0.0, 0.0, 0.0]))


def _translate_y(image, magnitude):
  t = _level(magnitude) * TRANSLATE_PCT * tf.cast(tf.shape(image)[0], tf.float32)
  return _transform(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, t, 0.0, 0.0]))


# The paper's fourteen operations, in its order.
_OPS = {
    'Identity': _identity,
    'AutoContrast': _auto_contrast,
    'Equalize': _equalize,
    'Rotate': _rotate,
    'Solarize': _solarize,
    'Color': _color,
    'Posterize': _posterize,
    'Contrast': _contrast,
    'Brightness': _brightness,
    'Sharpness': _sharpness,
    'ShearX': _shear_x,
    'ShearY': _shear_y,
    'TranslateX': _translate_x,
    'TranslateY': _translate_y,
}
RAND_AUGMENT_OPS = tuple(_OPS)


def _check_ops(ops):
  if not ops:  # None or (): all of them, as the configs' () means
    return RAND_AUGMENT_OPS
  if isinstance(ops, str):
    ops = (ops,)
  unknown = [name for name in ops if name not in _OPS]
  if unknown:
    raise ValueError(f'unknown RandAugment op(s) {unknown}; valid: {", ".join(RAND_AUGMENT_OPS)}')
  return tuple(ops)


def _check_uint8(image):
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8:
    raise ValueError(f'RandAugment works on uint8 images, got {image.dtype.name}')
  if image.shape.rank != 3 or _channels(image) not in (1, 3):
    raise ValueError(f'RandAugment expects [H, W, 1 or 3], got shape {image.shape}')
  return image


def apply_op(image, name: str, magnitude):
  """One RandAugment op at a given signed magnitude (unsigned ops ignore the sign); for tests and for looking."""
  image = _check_uint8(image)
  (name,) = _check_ops((name,))
  return _OPS[name](image, tf.convert_to_tensor(magnitude, tf.float32))


def rand_augment(image, seed, num_layers: int = 2, magnitude: float = 10, magnitude_std: float = 0.0,
                 ops: Sequence[str] | None = None):
  """RandAugment (Cubuk et al. 2020) on a uint8 image: `num_layers` ops, each drawn uniformly from `ops`.

  Every layer applies its op (Identity is among the choices, as in the paper) at `magnitude`, or with
  magnitude_std > 0 at a magnitude drawn from N(magnitude, magnitude_std) (timm's 'mstd'), clipped to
  [0, MAX_MAGNITUDE]. Signed ops get a random sign. `ops` restricts the choice by name (see RAND_AUGMENT_OPS).
  """
  image = _check_uint8(image)
  names = _check_ops(ops)
  if num_layers < 0 or magnitude_std < 0 or not 0 <= magnitude <= MAX_MAGNITUDE:
    raise ValueError(f'rand_augment: need num_layers >= 0, 0 <= magnitude <= {MAX_MAGNITUDE}, magnitude_std >= 0; '
                     f'got {num_layers}, {magnitude}, {magnitude_std}')
  if num_layers == 0:
    return image
  shape = image.shape
  for layer_seed in tf.unstack(_split(seed, num_layers)):
    op_seed, magnitude_seed, sign_seed = tf.unstack(_split(layer_seed, 3))
    index = tf.random.stateless_uniform([], op_seed, 0, len(names), dtype=tf.int32)
    m = tf.constant(float(magnitude))
    if magnitude_std > 0:
      m = m + magnitude_std * tf.random.stateless_normal([], magnitude_seed)
    m = tf.clip_by_value(m, 0.0, MAX_MAGNITUDE)
    m = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -m, m)
    branches = [functools.partial(_OPS[name], image, m) for name in names]
    image = tf.switch_case(index, branches)
    image.set_shape(shape)
  return image
