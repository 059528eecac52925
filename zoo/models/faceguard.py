"""FaceGuard (Yang et al. 2021): a learned watermark, robust to post-processing and fragile to deepfake manipulation.

The networks follow HiDDeN (Zhu et al. 2018), which FaceGuard ("Proactive Deepfake Detection", Yang et al. 2021)
builds on, in two layouts of the message (`message_layout`):
- 'broadcast', HiDDeN's: the L bits are copied to every pixel and concatenated with the encoder's features; the
  decoder is `decoder_blocks` x Conv-BN-ReLU(64), Conv-BN-ReLU(L), global average pooling, Linear(L, L). Every pixel
  gets the same message, so the encoder can vary its output only with the image content: on small, smooth faces it
  learns slowly (docs/models/faceguard.md compares the two layouts).
- 'spatial' (default): a message processor (MBRS, Jia et al. 2021) maps the +-1 bits linearly onto a
  `message_grid`^2 map, upsamples it to the image and convolves it, so each bit has its own places in the image; the
  decoder halves the resolution (max pooling) after each Conv-BN-ReLU(64) until it reaches the grid, then a 3x3
  convolution to one channel and Linear(grid^2, L) read the bits back.
In both, the encoder runs the image through `encoder_blocks` x Conv-BN-ReLU(64), concatenates the message, its
features and the image, then Conv-BN-ReLU(64) and a 1x1 convolution to 3 channels. We add that output to the cover
image (HiDDeN outputs the image directly), so that training starts at the identity and only has to learn the
watermark: at init the 1x1 convolution is zero and the encoded image is the cover.
- Critic (optional, HiDDeN's adversary): 3 x Conv-BN-ReLU(64), global average pooling, Linear(1): cover or encoded.
- FaceAutoencoder: the stand-in deepfake generator of the evaluation, a conv autoencoder that re-synthesises a face
  from a bottleneck (stride-2 convs down, transposed convs up), trained on faces without watermarks.
Images are NHWC RGB in [0, 1]; messages are {0, 1} bit vectors [B, L]; the decoder's outputs are trained towards
the bits, and a bit reads 1 where its output is above 0.5.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import UserError
from zoo.models import layers
from zoo.registry import ModelCard, register_model

MESSAGE_LAYOUTS = ('spatial', 'broadcast')


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


class ConvBNReLUNetwork(nn.Module):
  """The fields that FaceGuard's networks pass on to their Conv-BN-ReLU layers, and a method to add one."""
  features: int = 64
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  def conv_bn_relu(self, h, train: bool, name: str, features: int | None = None):
    return ConvBNReLU(features or self.features, self.bn_axis_name, self.dtype, name=name)(h, train)


class MessageProcessor(ConvBNReLUNetwork):
  """bits [B, L] -> features [B, H, W, C] that place each bit somewhere in the image (the 'spatial' layout)."""
  grid: int = 8

  @nn.compact
  def __call__(self, bits, height: int, width: int, train: bool = False):
    dt = layers.as_dtype(self.dtype)
    cells = nn.Dense(self.grid * self.grid, dtype=dt, name='to_grid')((2.0 * bits - 1.0).astype(dt))
    cells = jax.image.resize(cells.reshape(-1, self.grid, self.grid, 1), (len(bits), height, width, 1), 'nearest')
    return self.conv_bn_relu(cells, train, 'conv')


class Encoder(ConvBNReLUNetwork):
  """(cover [B, H, W, 3], bits [B, L]) -> watermarked image [B, H, W, 3] (not clipped: the noise layers and the
  image loss see what the network made; `FaceGuard.embed` clips)."""
  blocks: int = 4
  message_layout: str = 'spatial'
  message_grid: int = 8

  @nn.compact
  def __call__(self, cover, bits, train: bool = False):
    h = cover.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = self.conv_bn_relu(h, train, f'conv{i}')
    if self.message_layout == 'spatial':
      message = MessageProcessor(features=self.features, bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                                 grid=self.message_grid, name='message')(bits, h.shape[1], h.shape[2], train)
    else:
      message = jnp.broadcast_to(bits[:, None, None, :].astype(h.dtype), h.shape[:3] + (bits.shape[-1],))
    h = jnp.concatenate([h, message, cover.astype(h.dtype)], axis=-1)
    h = self.conv_bn_relu(h, train, 'after_concat')
    residual = nn.Conv(3, (1, 1), kernel_init=nn.initializers.zeros, dtype=h.dtype, name='to_rgb')(h)
    return cover + residual.astype(jnp.float32)


class Decoder(ConvBNReLUNetwork):
  """image [B, H, W, 3] -> one real output per bit [B, L] (trained towards the {0, 1} bits). The 'spatial' layout
  needs H = W = message_grid x 2^k with k <= blocks (the watermark API resizes every image to the model's size)."""
  message_bits: int = 32
  blocks: int = 7
  message_layout: str = 'spatial'
  message_grid: int = 8

  @nn.compact
  def __call__(self, image, train: bool = False):
    spatial = self.message_layout == 'spatial'
    if spatial:
      self.check_size(image.shape[1], image.shape[2])
    h = image.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = self.conv_bn_relu(h, train, f'conv{i}')
      if spatial and h.shape[1] > self.message_grid:
        h = nn.max_pool(h, (2, 2), (2, 2))
    if spatial:
      h = nn.Conv(1, (3, 3), padding='SAME', dtype=h.dtype, name='to_grid')(h).reshape(len(h), -1)
    else:
      h = jnp.mean(self.conv_bn_relu(h, train, 'to_bits', self.message_bits), axis=(1, 2))
    return nn.Dense(self.message_bits, dtype=h.dtype, name='linear')(h).astype(jnp.float32)

  def check_size(self, height: int, width: int):
    side, halvings = height, 0
    while side > self.message_grid and side % 2 == 0 and halvings < self.blocks:
      side, halvings = side // 2, halvings + 1
    if height != width or side != self.message_grid:
      raise UserError(f"faceguard's spatial decoder needs square images of side message_grid ({self.message_grid}) "
                      f'x 2^k, k <= decoder_blocks ({self.blocks}), got {height}x{width}')


class Critic(ConvBNReLUNetwork):
  """image [B, H, W, 3] -> logit [B] that the image carries a watermark."""
  blocks: int = 3

  @nn.compact
  def __call__(self, image, train: bool = False):
    h = image.astype(layers.as_dtype(self.dtype))
    for i in range(self.blocks):
      h = self.conv_bn_relu(h, train, f'conv{i}')
    return nn.Dense(1, dtype=h.dtype, name='linear')(jnp.mean(h, axis=(1, 2)))[:, 0].astype(jnp.float32)


class FaceGuard(nn.Module):
  """Encoder, decoder and (with `critic=True`) the adversary, in one variable tree.

  `apply(v, cover, bits, method=model.embed)` watermarks, `apply(v, image, method=model.decode)` reads the raw
  outputs, `apply(v, image, method=model.extract)` the bits; `__call__` (used to initialise) does all of them."""
  message_bits: int = 32
  encoder_blocks: int = 4
  decoder_blocks: int = 4
  features: int = 64
  message_layout: str = 'spatial'
  message_grid: int = 8
  critic: bool = False
  bn_axis_name: str | None = None
  dtype: str = 'float32'

  def check_config(self):
    if self.message_bits < 1 or self.encoder_blocks < 1 or self.decoder_blocks < 1 or self.features < 1:
      raise UserError('faceguard needs message_bits, encoder_blocks, decoder_blocks and features >= 1, got '
                      f'{self.message_bits}, {self.encoder_blocks}, {self.decoder_blocks}, {self.features}')
    if self.message_layout not in MESSAGE_LAYOUTS or self.message_grid < 1:
      raise UserError(f'faceguard needs message_layout in {MESSAGE_LAYOUTS} and message_grid >= 1, got '
                      f'{self.message_layout!r}, {self.message_grid}')

  def setup(self):
    self.check_config()
    common = dict(features=self.features, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    layout = dict(message_layout=self.message_layout, message_grid=self.message_grid)
    self.encoder = Encoder(blocks=self.encoder_blocks, **common, **layout)
    self.decoder = Decoder(message_bits=self.message_bits, blocks=self.decoder_blocks, **common, **layout)
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


# Both work on 64x64 RGB faces in [0, 1], not normalised (configs/faceguard.py).
register_model('faceguard', FaceGuard, ModelCard('faceguard', 'watermarking', 64, 'configs/faceguard.py'))
register_model('face_autoencoder', FaceAutoencoder,
               ModelCard('faceguard', 'autoencoding', 64, 'configs/faceguard.py:autoencoder'))
