"""The classification input's image operations, on the host, with OpenCV and numpy: no TensorFlow.

Images are uint8 numpy arrays [H, W, C], C = 1 or 3, RGB. Every random choice is drawn from the `np.random.Generator`
passed in; the input pipeline seeds it from the example's position in the global stream (grain's `random_map`), so
an augmented example is a pure function of (seed, position, record): the same on any number of hosts or workers,
and after a resume.

Resizing is bilinear on pixel centres (OpenCV's INTER_LINEAR, TensorFlow's `tf.image.resize` without antialias).
A training crop that is at least twice the output side is decoded from the JPEG at 1/2, 1/4 or 1/8 scale (libjpeg's
DCT scaling: cheaper, and it averages pixels rather than skipping them), and the box is cut from the reduced image at
its exact fractional place, so it is the same part of the image either way.
"""
import io
import math
import struct

import cv2
import numpy as np
from PIL import Image

from zoo.errors import DatasetError

_COLOUR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}
_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
         8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # JPEG frame headers


def _jpeg_shape(data: bytes) -> tuple[int, int] | None:
  """(H, W) from a JPEG's frame header, walking the marker segments before it; None where they do not parse."""
  i = 2
  while i + 9 <= len(data):
    if data[i] != 0xFF:
      return None
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte
      i += 1
    elif marker in _SOF:
      h, w = struct.unpack('>HH', data[i + 5:i + 9])
      return (h, w) if h and w else None
    elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
      i += 2
    else:
      i += 2 + struct.unpack('>H', data[i + 2:i + 4])[0]
  return None


def image_shape(encoded: bytes) -> tuple[int, int] | None:
  """(H, W) from the image's header without decoding its pixels, or None where it cannot be read. JPEG and PNG
  headers are parsed here (a tenth of Pillow's time, which tells on small images), other formats by Pillow."""
  data = bytes(encoded[:65536]) if not isinstance(encoded, bytes) else encoded
  if data[:3] == b'\xff\xd8\xff':
    shape = _jpeg_shape(data)
    if shape:
      return shape
  elif data[:8] == b'\x89PNG\r\n\x1a\n' and data[12:16] == b'IHDR':
    w, h = struct.unpack('>II', data[16:24])
    return h, w
  try:
    w, h = Image.open(io.BytesIO(encoded)).size
  except Exception:  # noqa: BLE001  (Pillow raises many types for bytes it does not understand)
    return None
  return h, w


def decode(encoded: bytes, channels: int, reduce: int = 1) -> np.ndarray:
  """Decodes an encoded image (JPEG, PNG, BMP, ...) to uint8 [H, W, channels] RGB, EXIF orientation ignored (as
  TensorFlow and Pillow decode). `reduce` 2, 4 or 8 decodes a JPEG at that fraction of its size. A record that is
  no image raises DatasetError."""
  flags = (_COLOUR if channels == 3 else _GREY)[reduce] | cv2.IMREAD_IGNORE_ORIENTATION
  image = cv2.imdecode(np.frombuffer(encoded, np.uint8), flags) if len(encoded) else None
  if image is None:
    raise DatasetError(f'cannot decode an image record of {len(encoded)} bytes (starts {bytes(encoded[:8])!r})')
  if channels == 3:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
  return image[:, :, None]


def sample_crop_box(image_hw, rng: np.random.Generator, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3),
                    max_attempts: int = 10):
  """Inception crop box (Szegedy et al. 2015) of an image of `image_hw`: ((top, left), (height, width)).

  Area uniform in `area_range` of the image's, aspect ratio (width / height) log-uniform in `aspect_range` (as
  torchvision's RandomResizedCrop); the first of `max_attempts` boxes that fits is placed uniformly. If none fits,
  the whole image (as TensorFlow's sample_distorted_bounding_box). Always draws the same count of numbers, so what
  is drawn after it does not depend on the image's shape."""
  h, w = int(image_hw[0]), int(image_hw[1])
  draws = rng.random(2 * max_attempts + 2).tolist()  # one call: numpy's per-call cost tells on small images
  for area, aspect in _candidates(draws, max_attempts, h * w, area_range, aspect_range):
    ch, cw = round(math.sqrt(area / aspect)), round(math.sqrt(area * aspect))
    if 1 <= ch <= h and 1 <= cw <= w:
      return (int(draws[-2] * (h - ch + 1)), int(draws[-1] * (w - cw + 1))), (ch, cw)
  return (0, 0), (h, w)


def _candidates(draws, count: int, image_area: int, area_range, aspect_range):
  """(area, aspect) of `count` candidate boxes from uniform draws: the area uniform in `area_range` of the
  image's, the aspect log-uniform in `aspect_range` (draws[:count] and draws[count:2 * count])."""
  lo, hi = math.log(aspect_range[0]), math.log(aspect_range[1])
  for a, b in zip(draws[:count], draws[count:2 * count]):
    yield (area_range[0] + (area_range[1] - area_range[0]) * a) * image_area, math.exp(lo + (hi - lo) * b)


def crop_and_resize(image: np.ndarray, offset, size_hw, out: int) -> np.ndarray:
  """The box (offset, size_hw) of a decoded image, resized to out x out (bilinear): uint8 [out, out, C]."""
  (top, left), (h, w) = offset, size_hw
  crop = image[top:top + h, left:left + w]
  resized = cv2.resize(crop, (out, out), interpolation=cv2.INTER_LINEAR)
  return resized.reshape(out, out, image.shape[-1])


def is_jpeg(encoded: bytes) -> bool:
  return bytes(encoded[:3]) == b'\xff\xd8\xff'


def _reduction(crop_hw, out: int) -> int:
  """The largest JPEG scale-down factor (1, 2, 4 or 8) that leaves the crop at least `out` pixels on each side."""
  factor = 1
  while factor < 8 and min(crop_hw) >= 2 * factor * out:
    factor *= 2
  return factor


def decode_and_inception_crop(encoded: bytes, rng: np.random.Generator, out: int, channels: int,
                              area_range=(0.08, 1.0)):
  """The training crop from encoded bytes: (uint8 [out, out, C], image (H, W), box offset, box size).

  The box comes from the header's shape where Pillow reads it (else from the decoded image); a large box is decoded
  at a reduced scale (module docstring) and cut at the same fractions of the reduced image."""
  shape = image_shape(encoded)
  if shape is None:
    image = decode(encoded, channels)
    shape = image.shape[:2]
    offset, size = sample_crop_box(shape, rng, area_range)
    return crop_and_resize(image, offset, size, out), shape, offset, size
  offset, size = sample_crop_box(shape, rng, area_range)
  image = decode(encoded, channels, _reduction(size, out) if is_jpeg(encoded) else 1)
  if image.shape[:2] == tuple(shape):
    return crop_and_resize(image, offset, size, out), shape, offset, size
  # The same box in the reduced image's coordinates (libjpeg rounds the reduced sides up), cut at its fractional
  # position: output pixel (u, v) samples the box at its centre's place, as resizing the full-scale box would.
  sy, sx = image.shape[0] / shape[0], image.shape[1] / shape[1]
  step_y, step_x = size[0] * sy / out, size[1] * sx / out
  matrix = np.array([[step_x, 0.0, offset[1] * sx + 0.5 * step_x - 0.5],
                     [0.0, step_y, offset[0] * sy + 0.5 * step_y - 0.5]])
  crop = cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)
  return crop.reshape(out, out, channels), shape, offset, size


def resize_and_center_crop(image: np.ndarray, out: int, crop_pct: float = 0.875) -> np.ndarray:
  """Eval transform: shorter side to floor(out / crop_pct), bilinear, then the central out x out (uint8).

  The longer side scales to floor(long * target / short), as torchvision's Resize; an odd surplus puts the extra
  pixel after the crop (bottom / right)."""
  if not 0.0 < crop_pct <= 1.0:
    raise ValueError(f'crop_pct must be in (0, 1], got {crop_pct}')
  target = int(math.floor(out / crop_pct))
  h, w = image.shape[:2]
  short = min(h, w)
  new_h, new_w = (target, w * target // short) if h <= w else (h * target // short, target)
  resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR).reshape(new_h, new_w, image.shape[-1])
  top, left = (new_h - out) // 2, (new_w - out) // 2
  return np.ascontiguousarray(resized[top:top + out, left:left + out])


_PIL_FILTERS = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}


def published_eval_transform(image: np.ndarray, out: int, crop_pct: float, interpolation: str) -> np.ndarray:
  """The evaluation of published weights as timm computes it (`create_transform` of `resolve_data_config`, which a
  model card's input_size, crop_pct and interpolation record): the shorter side to floor(out / crop_pct) with
  Pillow's filter (antialiased), the longer one to int(target * long / short), then the centre out x out at the
  offset torchvision's CenterCrop rounds to. A crop_pct above 1 (timm's VOLO-D4/D5 at 448 and 512: 1.15) leaves a
  side shorter than `out`, which CenterCrop pads with zeros, half before (rounded down) and half after.
  uint8 [out, out, C]; normalise with the card's mean and std."""
  if not crop_pct > 0.0 or interpolation not in _PIL_FILTERS:
    raise ValueError(f'crop_pct must be positive and interpolation one of {sorted(_PIL_FILTERS)}, got {crop_pct}, '
                     f'{interpolation!r}')
  target = int(math.floor(out / crop_pct))
  h, w = image.shape[:2]
  new_h, new_w = (target, int(target * w / h)) if h <= w else (int(target * h / w), target)
  pil = Image.fromarray(image[:, :, 0] if image.shape[-1] == 1 else image)
  resized = np.asarray(pil.resize((new_w, new_h), _PIL_FILTERS[interpolation])).reshape(new_h, new_w, -1)
  pad_h, pad_w = max(out - new_h, 0), max(out - new_w, 0)
  resized = np.pad(resized, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  top, left = int(round((resized.shape[0] - out) / 2.0)), int(round((resized.shape[1] - out) / 2.0))
  return np.ascontiguousarray(resized[top:top + out, left:left + out])


def sample_erase_box(image_hw, rng: np.random.Generator, probability: float, area_range=(0.02, 1 / 3),
                     aspect_range=(0.3, 1 / 0.3), max_attempts: int = 10) -> np.ndarray:
  """Random Erasing (Zhong et al. 2017) as timm's mode='pixel', one box: int32 [top, left, height, width], all zero
  when nothing is erased. With `probability`, the first of `max_attempts` boxes of area in `area_range` of the
  image's and log-uniform aspect (h / w) that fits. The training step fills the box with N(0, 1) noise after
  normalising (zoo/tasks/classification.py), where that noise looks like the data's own spread."""
  h_img, w_img = int(image_hw[0]), int(image_hw[1])
  draws = rng.random(2 * max_attempts + 3).tolist()
  if draws[-1] < probability:
    for area, aspect in _candidates(draws, max_attempts, h_img * w_img, area_range, aspect_range):
      h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
      if 1 <= h < h_img and 1 <= w < w_img:
        return np.array([int(draws[-3] * (h_img - h + 1)), int(draws[-2] * (w_img - w + 1)), h, w], np.int32)
  return np.zeros(4, np.int32)


def crop_token_labels(token_labels: np.ndarray, image_hw, offset, size_hw, grid) -> np.ndarray:
  """Labels of the grid's tokens for the crop box (offset, size_hw) of an image of `image_hw`: each token takes the
  label of `token_labels` (a map over the whole image, any resolution) under its centre, the point of the crop that
  the resize puts at the token's centre. int32 [grid[0], grid[1]]."""
  index = []
  for a in range(2):
    n = token_labels.shape[a]
    centres = offset[a] + (np.arange(grid[a]) + 0.5) * size_hw[a] / grid[a]
    index.append(np.clip(np.floor(centres * n / image_hw[a]).astype(np.int64), 0, n - 1))
  return token_labels[np.ix_(index[0], index[1])].astype(np.int32)
