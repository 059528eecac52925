"""RandAugment (Cubuk et al. 2020) with numpy and OpenCV, for the host input pipeline: no TensorFlow.

It runs in grain's threads and worker processes, without TensorFlow. It replaced the TensorFlow implementation of the
former tf.data input (now tools/tf_augment.py, the reference it is tested against) and keeps its conventions, so that
configs and results carry over:

- Magnitudes: an op reaches its range at `LEVEL_DENOM` = 10 (Rotate 30 degrees, Shear 0.3, Translate
  `TRANSLATE_PCT` = 0.45 of the side, enhance factor 1 +- 0.9 never below 0.1, Solarize threshold 0, Posterize 4
  bits); above 10, up to `MAX_MAGNITUDE` = 30, ranges extrapolate linearly. Signed ops take the magnitude's sign,
  the others its absolute value. Solarize and Posterize grow stronger with magnitude.
- Geometric ops resample bilinearly (OpenCV's warpAffine) and fill what they uncover with grey `FILL_VALUE` = 128.
- Pixel arithmetic is PIL's (as in the reference): luma weights 0.299 / 0.587 / 0.114 rounded, blends truncated
  (floor(degenerate + factor * (image - degenerate))), computed in float32 as the reference computes them, so the
  pixel ops give the reference's values exactly; the geometric ops agree to within interpolation rounding
  (tests/test_randaugment.py states the bounds).

Every random draw comes from the `np.random.Generator` passed in. grain's `random_map` seeds it from the example's
position in the global stream, so an augmented image is a pure function of (seed, position, image), independent of
the number of workers or hosts and of resumption.

Images are numpy uint8 [H, W, C] with C = 1 or 3; each op returns a C-contiguous uint8 array of the same shape (the
input itself where nothing changes).
"""
from typing import Sequence

import cv2
import numpy as np

LEVEL_DENOM = 10.0  # magnitude at which each op reaches the range quoted in the module docstring
MAX_MAGNITUDE = 30.0  # magnitudes (also those drawn with magnitude_std) are clipped to [0, MAX_MAGNITUDE]
FILL_VALUE = 128.0  # grey, where geometric ops uncover the canvas
TRANSLATE_PCT = 0.45  # the shift at LEVEL_DENOM as a fraction of the image side

_F32 = np.float32
_LEVELS = np.arange(256, dtype=np.float32)  # every uint8 value, for look-up tables
_LUMA = (_F32(0.299), _F32(0.587), _F32(0.114))
_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # the matrices below map output pixels to input pixels
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / _F32(13.0)  # PIL's ImageFilter.SMOOTH


# ----------------------------------------------------------------------------------------------------------------------
# Helpers. The scalar arithmetic is float32, step by step as the reference does it, so thresholds and factors are
# the same numbers.


def _level(magnitude):
  """Fraction of an op's range: magnitude / LEVEL_DENOM, keeping the sign (float32)."""
  return _F32(magnitude) / _F32(LEVEL_DENOM)


def _enhance_factor(magnitude):
  """The increasing enhance mapping: 1 +- 0.9 at LEVEL_DENOM, never below 0.1."""
  return max(_F32(0.1), _F32(1.0) + _level(magnitude) * _F32(0.9))


def _lut(image, table):
  """Applies a uint8 look-up table: [256] for every channel, or [C, 256] one per channel."""
  table = np.asarray(table, np.uint8)
  if table.ndim == 2:
    table = np.ascontiguousarray(table.T).reshape(256, 1, -1)  # cv2 reads a C-channel table as 256 x 1 x C
  return cv2.LUT(image, table).reshape(image.shape)


def _to_uint8_table(values):
  """Float32 table -> uint8 table: rounded (half to even) and clipped, as the reference casts."""
  return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _grey(image):
  """PIL's 'L' conversion (ITU-R 601-2 luma) of a uint8 image, rounded: [H, W] float32.

  The products and sums are float32 in the reference's order (r * 0.299 + g * 0.587 + b * 0.114), which gives its
  values for all 2**24 colours (measured; cv2.transform, which computes in double, rounds 1166 of them differently)."""
  planes = cv2.split(image)  # contiguous planes: numpy is slow on strided channels
  grey = planes[0].astype(np.float32)
  if len(planes) == 1:
    return grey
  grey *= _LUMA[0]
  for plane, weight in zip(planes[1:], _LUMA[1:]):
    term = plane.astype(np.float32)
    term *= weight
    grey += term
  return np.rint(grey, out=grey)


def _blend(degenerate, x, factor):
  """PIL's Image.blend(degenerate, image, factor), truncated as PIL does, as uint8. Overwrites `x` (float32, the image;
  `degenerate` broadcasts to it): fewer fresh buffers, whose page faults would cost more than the arithmetic."""
  x -= degenerate
  x *= factor
  x += degenerate
  np.floor(x, out=x)
  np.clip(x, 0.0, 255.0, out=x)
  return x.astype(np.uint8)


def _blend_table(degenerate, factor):
  """`_blend` of every uint8 value against a scalar `degenerate`, as a look-up table."""
  return _blend(_F32(degenerate), _LEVELS.copy(), factor)


# ----------------------------------------------------------------------------------------------------------------------
# The operations: uint8 [H, W, C] and a signed magnitude in, uint8 of the same shape out.


def _identity(image, magnitude):
  del magnitude
  return image


def _auto_contrast(image, magnitude):
  """Stretches each channel to span 0..255; a flat channel is left alone."""
  del magnitude
  extremes = [cv2.minMaxLoc(plane)[:2] for plane in cv2.split(image)]  # numpy's min(axis=(0, 1)) is slow
  tables = []
  for c_lo, c_hi in extremes:
    if c_hi > c_lo:
      scale = _F32(255.0) / _F32(c_hi - c_lo)
      tables.append(_to_uint8_table(np.floor((_LEVELS - _F32(c_lo)) * scale)))
    else:
      tables.append(np.arange(256, dtype=np.uint8))
  return _lut(image, np.stack(tables))


def _histogram(image, channel):
  """Pixel counts of each level 0..255 in one channel, int64."""
  if image.shape[0] * image.shape[1] >= 2 ** 24:  # cv2 counts in float32, exact below 2**24
    return np.bincount(image[..., channel].ravel(), minlength=256)
  return cv2.calcHist([image], [channel], None, [256], [0, 256]).ravel().astype(np.int64)


def _equalize(image, magnitude):
  """PIL's ImageOps.equalize per channel: a look-up table from the cumulative histogram, spread over 0..255."""
  del magnitude
  tables = []
  for c in range(image.shape[-1]):
    hist = _histogram(image, c)
    last = np.flatnonzero(hist)[-1]
    step = (int(hist.sum()) - int(hist[last])) // 255  # PIL leaves out the count of the highest occupied level
    if step == 0:
      tables.append(np.arange(256, dtype=np.uint8))
      continue
    before = np.concatenate([[0], np.cumsum(hist)[:-1]])  # pixels below each level
    tables.append(np.minimum((before + step // 2) // step, 255))
  return _lut(image, np.stack(tables))


def _solarize(image, magnitude):
  """Inverts pixels at or above a threshold that falls from 256 (no-op) at magnitude 0 to 0 (full invert) at 10."""
  threshold = np.clip(_F32(256.0) - abs(_level(magnitude)) * _F32(256.0), _F32(0.0), _F32(256.0))
  return _lut(image, np.where(_LEVELS >= threshold, 255 - np.arange(256), np.arange(256)))


def _posterize(image, magnitude):
  """Keeps the top 8 - floor(4 * |m| / 10) bits (8 at 0, 4 at 10), never fewer than 1."""
  bits = 8 - int(np.floor(abs(_level(magnitude)) * _F32(4.0)))
  shift = 8 - min(max(bits, 1), 8)
  return _lut(image, (np.arange(256) >> shift) << shift)


def _color(image, magnitude):
  """Saturation: blends with the grey image. A grey (1-channel) image has no colour to change."""
  if image.shape[-1] == 1:
    return image
  grey = _grey(image)
  # Three contiguous copies: numpy broadcasting along a last axis of 3 is several times slower.
  return _blend(cv2.merge([grey, grey, grey]), image.astype(np.float32), _enhance_factor(magnitude))


def _contrast(image, magnitude):
  """Blends with a flat image at the mean grey level (PIL's ImageEnhance.Contrast)."""
  total = cv2.sumElems(_grey(image))[0]  # a sum of integers in double: exact
  mean = np.floor(_F32(total) / _F32(image.shape[0] * image.shape[1]) + _F32(0.5))
  return _lut(image, _blend_table(mean, _enhance_factor(magnitude)))


def _brightness(image, magnitude):
  """Blends with black, i.e. scales the pixel values."""
  return _lut(image, _blend_table(0.0, _enhance_factor(magnitude)))


def _sharpness(image, magnitude):
  """Blends with PIL's SMOOTH-filtered image (3x3 kernel, centre 5, others 1, over 13); the border stays as is."""
  h, w, _ = image.shape
  if h < 3 or w < 3:  # all border: the blend is the image itself
    return image
  x = image.astype(np.float32)
  # Each smoothed value is an integer over 13, never within 1/26 of a half: float32 sums round like exact ones.
  degenerate = cv2.filter2D(x, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE).reshape(image.shape)
  np.rint(degenerate, out=degenerate)
  degenerate[0], degenerate[-1], degenerate[:, 0], degenerate[:, -1] = x[0], x[-1], x[:, 0], x[:, -1]
  return _blend(degenerate, x, _enhance_factor(magnitude))


def _warp(image, matrix):
  """Resamples with the affine map `matrix` (2 x 3, output pixel (x, y) -> input pixel), bilinear, grey fill.

  OpenCV and TensorFlow's ImageProjectiveTransform both put pixel centres at integer coordinates, so the reference's
  matrix is used unchanged, and both round the interpolated value half to even. They differ, by 1, only where that
  value lies within float rounding of a half: the reference computes the source position in float32 (so that, e.g.,
  x + 121.49999 becomes x + 121.5), OpenCV in its own arithmetic."""
  h, w, c = image.shape
  out = cv2.warpAffine(image, np.asarray(matrix, np.float64).reshape(2, 3), (w, h), flags=_WARP_FLAGS,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL_VALUE,) * 4)
  return out.reshape(h, w, c)  # OpenCV drops the axis of a 1-channel image


def _rotate(image, magnitude):
  """Rotates about the image centre, 30 degrees at magnitude 10."""
  theta = _level(magnitude) * _F32(30.0 * np.pi / 180.0)
  cy, cx = (_F32(image.shape[0]) - _F32(1.0)) / _F32(2.0), (_F32(image.shape[1]) - _F32(1.0)) / _F32(2.0)
  cos, sin = np.cos(theta), np.sin(theta)
  return _warp(image, [[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy]])


def _shear_x(image, magnitude):
  """x_in = x + s * y (about the top-left corner, as PIL), s = 0.3 at magnitude 10."""
  s = _level(magnitude) * _F32(0.3)
  return _warp(image, [[1.0, s, 0.0], [0.0, 1.0, 0.0]])


def _shear_y(image, magnitude):
  s = _level(magnitude) * _F32(0.3)
  return _warp(image, [[1.0, 0.0, 0.0], [s, 1.0, 0.0]])


def _translate_x(image, magnitude):
  """Shifts by TRANSLATE_PCT of the width at magnitude 10 (positive magnitude moves the content left)."""
  t = _level(magnitude) * _F32(TRANSLATE_PCT) * _F32(image.shape[1])
  return _warp(image, [[1.0, 0.0, t], [0.0, 1.0, 0.0]])


def _translate_y(image, magnitude):
  t = _level(magnitude) * _F32(TRANSLATE_PCT) * _F32(image.shape[0])
  return _warp(image, [[1.0, 0.0, 0.0], [0.0, 1.0, t]])


# The paper's fourteen operations, in its order (the names and order of the TF reference's).
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


# ----------------------------------------------------------------------------------------------------------------------
# The policy.


def check_ops(ops) -> tuple[str, ...]:
  """The op names `ops` stands for: None or () mean all of RAND_AUGMENT_OPS; an unknown name raises ValueError."""
  if not ops:  # None or (): all of them, as the configs' () means
    return RAND_AUGMENT_OPS
  if isinstance(ops, str):
    ops = (ops,)
  ops = tuple(ops)
  unknown = [name for name in ops if name not in RAND_AUGMENT_OPS]
  if unknown:
    raise ValueError(f'unknown RandAugment op(s) {unknown}; valid: {", ".join(RAND_AUGMENT_OPS)}')
  return ops


def _check_uint8(image):
  if not isinstance(image, np.ndarray):
    raise ValueError(f'RandAugment works on numpy uint8 images, got {type(image).__name__}')
  if image.dtype != np.uint8:
    raise ValueError(f'RandAugment works on uint8 images, got {image.dtype.name}')
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'RandAugment expects [H, W, 1 or 3], got shape {image.shape}')
  return np.ascontiguousarray(image)


def apply_op(image: np.ndarray, name: str, magnitude: float) -> np.ndarray:
  """One RandAugment op at a given signed magnitude (unsigned ops ignore the sign); uint8 [H, W, 1 or 3] in and out."""
  image = _check_uint8(image)
  (name,) = check_ops((name,))
  return _OPS[name](image, float(magnitude))


def draw_layers(rng: np.random.Generator, num_layers: int, magnitude: float, magnitude_std: float,
                n_ops: int) -> list[tuple[int, float]]:
  """RandAugment's draws for `num_layers` layers: (op index in [0, n_ops), signed magnitude) per layer.

  The op is uniform; the magnitude is `magnitude`, or with magnitude_std > 0 a draw of N(magnitude, magnitude_std),
  clipped to [0, MAX_MAGNITUDE]; its sign is + or - with probability 1/2 each. Takes exactly 4 * num_layers uniform
  numbers from `rng` whatever the settings (Generator.integers and .normal reject a variable count), so what is drawn
  after it does not move with n_ops or magnitude_std.
  """
  u = rng.random((num_layers, 4))
  index = np.minimum((u[:, 0] * n_ops).astype(np.int64), n_ops - 1)
  negative = u[:, 1] < 0.5
  magnitudes = np.full(num_layers, float(magnitude))
  if magnitude_std > 0:  # Box-Muller; 1 - u is in (0, 1], so the log is finite
    magnitudes += magnitude_std * np.sqrt(-2.0 * np.log1p(-u[:, 2])) * np.cos(2.0 * np.pi * u[:, 3])
  magnitudes = np.clip(magnitudes, 0.0, MAX_MAGNITUDE)
  magnitudes = np.where(negative, -magnitudes, magnitudes)
  return list(zip(index.tolist(), magnitudes.tolist()))


def rand_augment(image: np.ndarray, rng: np.random.Generator, num_layers: int = 2, magnitude: float = 10.0,
                 magnitude_std: float = 0.0, ops: Sequence[str] | None = None) -> np.ndarray:
  """RandAugment (Cubuk et al. 2020) on a uint8 image: `num_layers` ops, each drawn uniformly from `ops`.

  Every layer applies its op (Identity is among the choices, as in the paper) at `magnitude`, or with
  magnitude_std > 0 at a magnitude drawn from N(magnitude, magnitude_std) (timm's 'mstd'), clipped to
  [0, MAX_MAGNITUDE]. Signed ops get a random sign. `ops` restricts the choice by name (see RAND_AUGMENT_OPS);
  None or () mean all. Every draw comes from `rng` (see draw_layers).
  """
  image = _check_uint8(image)
  names = check_ops(ops)
  if not isinstance(rng, np.random.Generator):
    raise ValueError(f'rand_augment draws from a numpy.random.Generator, got {type(rng).__name__}')
  if (not isinstance(num_layers, (int, np.integer)) or num_layers < 0 or magnitude_std < 0
      or not 0 <= magnitude <= MAX_MAGNITUDE):
    raise ValueError(f'rand_augment: need integer num_layers >= 0, 0 <= magnitude <= {MAX_MAGNITUDE}, '
                     f'magnitude_std >= 0; got {num_layers}, {magnitude}, {magnitude_std}')
  if num_layers == 0:
    return image
  for index, signed_magnitude in draw_layers(rng, int(num_layers), magnitude, magnitude_std, len(names)):
    image = _OPS[names[index]](image, signed_magnitude)
  return image
