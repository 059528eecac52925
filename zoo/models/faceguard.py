"""FaceGuard (Yang et al.): a learned watermark, robust to post-processing and fragile to deepfake manipulation.

The networks follow HiDDeN (Zhu et al. 2018), which FaceGuard builds on (SPEC.md, FaceGuard):
- Encoder: the image through `encoder_blocks` x Conv-BN-ReLU(64); the message (L bits, broadcast over the image)
  concatenated with those features and the image; Conv-BN-ReLU(64); a 1x1 convolution to 3 channels. We add its
  output to the cover image (HiDDeN outputs the image directly), so that training starts at the identity and only has
  to learn the watermark: at init the 1x1 convolution is zero and the encoded image is the cover.
- Decoder: `decoder_blocks` x Conv-BN-ReLU(64), Conv-BN-ReLU(L), global average pooling, Linear(L, L). It reads
  any image size (the pooling is global); one bit per output, 1 where the output is above 0.5.
- Critic (optional, HiDDeN's adversary): 3 x Conv-BN-ReLU(64), global average pooling, Linear(1): cover or encoded.
- FaceAutoencoder: the stand-in deepfake generator of the evaluation, a conv autoencoder that re-synthesises a face
  from a bottleneck (stride-2 convs down, transposed convs up), trained on faces without watermarks.
Images are NHWC RGB in [0, 1]; messages are {0, 1} bit vectors [B, L].
"""
import flax.linen as nn
import jax.numpy as jnp

from zoo.errors import UserError
from zoo.models import layers
from zoo.registry import register_model


class ConvBNReLU(nn.Module):
  features: int
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, dtype=layers.as_dtype(self.dtype))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=x.dtype,
                     axis_name=self.bn_axis_name if train else None)(x)
    return nn.relu(x)


class Encoder(nn.Module):
  """(cover [B, H, W, 3], bits [B, L]) -> watermarked image [B, H, W, 3] (not clipped: the noise layers and the
  image loss see what the network made; `FaceGuard.embed` clips)."""
  blocks: int = 4
  features: int = 64
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, cover, bits, train: bool = False):
    h = cover.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = ConvBNReLU(self.features, self.bn_axis_name, self.dtype, name=f'conv{i}')(h, train)
    message = jnp.broadcast_to(bits[:, None, None, :].astype(h.dtype), h.shape[:3] + (bits.shape[-1],))
    h = jnp.concatenate([h, message, cover.astype(h.dtype)], axis=-1)
    h = ConvBNReLU(self.features, self.bn_axis_name, self.dtype, name='after_concat')(h, train)
    residual = nn.Conv(3, (1, 1), kernel_init=nn.initializers.zeros, dtype=h.dtype, name='to_rgb')(h)
    return cover + residual.astype(jnp.float32)


class Decoder(nn.Module):
  """image [B, H, W, 3] -> one real output per bit [B, L] (trained towards the {0, 1} bits)."""
  message_bits: int = 32
  blocks: int = 7
  features: int = 64
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, image, train: bool = False):
    h = image.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = ConvBNReLU(self.features, self.bn_axis_name, self.dtype, name=f'conv{i}')(h, train)
    h = ConvBNReLU(self.message_bits, self.bn_axis_name, self.dtype, name='to_bits')(h, train)
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(self.message_bits, dtype=h.dtype, name='linear')(h).astype(jnp.float32)


class Critic(nn.Module):
  """image [B, H, W, 3] -> logit [B] that the image carries a watermark."""
  blocks: int = 3
  features: int = 64
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, image, train: bool = False):
    h = image.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = ConvBNReLU(self.features, self.bn_axis_name, self.dtype, name=f'conv{i}')(h, train)
    return nn.Dense(1, dtype=h.dtype, name='linear')(jnp.mean(h, axis=(1, 2)))[:, 0].astype(jnp.float32)


class FaceGuard(nn.Module):
  """Encoder, decoder and (with `critic=True`) the adversary, in one variable tree.

  `apply(v, cover, bits, method=model.embed)` watermarks, `apply(v, image, method=model.decode)` reads the raw
  outputs, `apply(v, image, method=model.extract)` the bits; `__call__` (used to initialise) does all of them."""
  message_bits: int = 32
  encoder_blocks: int = 4
  decoder_blocks: int = 7
  features: int = 64
  critic: bool = False
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  def check_config(self):
    if self.message_bits < 1 or self.encoder_blocks < 1 or self.decoder_blocks < 1 or self.features < 1:
      raise UserError('faceguard needs message_bits, encoder_blocks, decoder_blocks and features >= 1, got '
                      f'{self.message_bits}, {self.encoder_blocks}, {self.decoder_blocks}, {self.features}')

  def setup(self):
    self.check_config()
    common = dict(features=self.features, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    self.encoder = Encoder(self.encoder_blocks, **common)
    self.decoder = Decoder(self.message_bits, self.decoder_blocks, **common)
    if self.critic:
      self.adversary = Critic(**common)

  def encode(self, cover, bits, train: bool = False):
    return self.encoder(cover, bits, train)

  def embed(self, cover, bits):
    """The published image: the encoder's output clipped to [0, 1]."""
    return jnp.clip(self.encoder(cover, bits), 0.0, 1.0)

  def decode(self, image, train: bool = False):
    return self.decoder(image, train)

  def extract(self, image):
    return (self.decoder(image) > 0.5).astype(jnp.int32)

  def critique(self, image, train: bool = False):
    return self.adversary(image, train)

  def __call__(self, cover, bits, train: bool = False):
    encoded = self.encode(cover, bits, train)
    decoded = self.decode(encoded, train)
    if self.critic:
      self.critique(encoded, train)
    return encoded, decoded


class FaceAutoencoder(nn.Module):
  """image [B, H, W, 3] -> re-synthesised image: `levels` stride-2 Conv-BN-ReLU down to a `bottleneck`-channel code,
  transposed convolutions back up, a sigmoid to [0, 1]. H and W must be multiples of 2^levels."""
  levels: int = 3
  features: int = 64
  bottleneck: int = 16
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, image, train: bool = False):
    size = 2 ** self.levels
    if image.shape[1] % size or image.shape[2] % size:
      raise UserError(f'face_autoencoder with {self.levels} levels needs sides divisible by {size}, got '
                      f'{image.shape[1]}x{image.shape[2]}')
    dt = layers.as_dtype(self.dtype)

    def norm_relu(h, name):
      return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=h.dtype,
                                  axis_name=self.bn_axis_name if train else None, name=name)(h))

    h = image.astype(dt)
    for i in range(self.levels):
      h = norm_relu(nn.Conv(self.features, (4, 4), (2, 2), padding='SAME', use_bias=False, dtype=dt,
                            name=f'down{i}')(h), f'down_bn{i}')
    h = norm_relu(nn.Conv(self.bottleneck, (3, 3), padding='SAME', use_bias=False, dtype=dt, name='code')(h),
                  'code_bn')
    for i in range(self.levels):
      h = norm_relu(nn.ConvTranspose(self.features, (4, 4), (2, 2), padding='SAME', use_bias=False, dtype=dt,
                                     name=f'up{i}')(h), f'up_bn{i}')
    return nn.sigmoid(nn.Conv(3, (3, 3), padding='SAME', dtype=dt, name='to_rgb')(h).astype(jnp.float32))


register_model('faceguard', FaceGuard)
register_model('face_autoencoder', FaceAutoencoder)
