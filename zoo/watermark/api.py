"""The watermark as a user calls it: `wm = load(workdir)`, then `wm.embed(image, bits)`, `wm.extract(image)` and
`wm.verify(image, claimed_bits, tau)`, on images of any size as uint8 [H, W, 3] arrays (Pillow's layout).

The networks work at the resolution they were trained at (`size`). `embed` encodes the image resized to that size
and adds the encoder's change, resized back, to the full-resolution image, so the published image keeps its own
size and detail; `extract` resizes any image to `size` first. A crop or a resize of the published image therefore
reaches the decoder as a zoom or a blur of what it was trained on, which is how the crop and resize noise layers
(zoo/watermark/noise.py) present them in training.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import zoo
from zoo import checkpoint, metrics
from zoo.errors import UserError


def load(workdir: str, step: int | None = None) -> 'Watermark':
  """The watermark of a FaceGuard training workdir, at `step` (default: the latest checkpoint)."""
  config, variables = checkpoint.load_variables(
      workdir, 'watermarking', step, 'python train.py --config=configs/faceguard.py --workdir=DIR')
  model = zoo.create_model(config['model'], **config['model_kwargs'])
  return Watermark(model, variables, config['input']['image_size'], config['model_kwargs']['message_bits'])


def _as_float(image) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise UserError(f'images must be RGB [H, W, 3], got shape {image.shape}')
  return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


class Watermark:
  def __init__(self, model, variables, size: int, bits: int):
    self.model, self.variables, self.size, self.bits = model, variables, size, bits

  @functools.cached_property
  def _embed(self):
    @jax.jit
    def run(image, bits):
      small = jax.image.resize(image, (self.size, self.size, 3), 'linear', antialias=True)
      encoded = self.model.apply(self.variables, small[None], bits[None], method=self.model.embed)[0]
      change = jax.image.resize(encoded - small, image.shape, 'linear', antialias=True)
      return jnp.clip(image + change, 0.0, 1.0)
    return run

  @functools.cached_property
  def _decode(self):
    @jax.jit
    def run(image):
      small = jax.image.resize(image, (self.size, self.size, 3), 'linear', antialias=True)
      return self.model.apply(self.variables, small[None], method=self.model.decode)[0]
    return run

  def _check_bits(self, bits) -> np.ndarray:
    bits = np.asarray(bits)
    if bits.shape != (self.bits,) or not np.isin(bits, (0, 1)).all():
      raise UserError(f'a watermark is {self.bits} bits of 0 / 1, got shape {bits.shape}')
    return bits.astype(np.float32)

  def embed(self, image, bits) -> np.ndarray:
    """The watermarked image, uint8 [H, W, 3], same size as `image` (uint8, or float in [0, 1])."""
    out = self._embed(jnp.asarray(_as_float(image)), jnp.asarray(self._check_bits(bits)))
    return np.round(np.asarray(out) * 255.0).astype(np.uint8)

  def extract(self, image) -> np.ndarray:
    """The watermark read from `image`: int [L] of 0 / 1."""
    return np.asarray(metrics.read_bits(self._decode(jnp.asarray(_as_float(image)))))

  def bitwise_accuracy(self, image, bits) -> float:
    """Fraction of the L `bits` that the watermark read from `image` matches (zoo.metrics.bit_accuracy)."""
    return float(metrics.bit_accuracy(self._decode(jnp.asarray(_as_float(image))), self._check_bits(bits)))

  def verify(self, image, claimed_bits, tau: float) -> tuple[bool, float]:
    """(is_real, bitwise accuracy): an image that claims to be the individual whose watermark is `claimed_bits` is
    real when the watermark read from it matches at least a fraction `tau` of those bits, else a deepfake."""
    accuracy = self.bitwise_accuracy(image, claimed_bits)
    return accuracy >= tau, accuracy
