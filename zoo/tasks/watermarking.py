"""Watermarking (FaceGuard, after HiDDeN): `faceguard` learns to hide L bits in an image and read them back after
the image was post-processed.

Each step draws fresh random messages and one noise layer for the batch (zoo/watermark/noise.py: identity, JPEG,
Gaussian blur, crop, resize, all differentiable) from the step's rng: encoded = E(cover, bits), decoded =
D(noise(encoded)). Loss (configs/faceguard.py gives the weights): `loss.image` * MSE(encoded, cover) + `loss.message` *
MSE(decoded, bits), plus, with `loss.adversarial` > 0 and `model_kwargs.critic=True`, HiDDeN's adversary: the critic
learns to tell covers from encoded images (its loss sees the encoded image without gradient) while the encoder
gets `loss.adversarial` * the critic's loss for calling the encoded image a cover (that term sees the critic's
parameters without gradient), so one optimiser trains both without either helping the other's objective.

Fragility (`loss.fragile` > 0): FaceGuard's watermark must not survive a deepfake. Each step also pastes another
image's face region into the encoded image (zoo/watermark/manipulation.py) and adds `loss.fragile` * MSE(decoded,
0.5): nothing of the bits may be readable from what is left around the face, so the encoder has to carry them in
the face. The post-processed and the face-replaced images go through the decoder as one batch.

Data (zoo/data/faces.py): the 80 training faces of lfw_subset and, with `input.photos`, crops of RGB photographs;
evaluation embeds a fixed message (from `seed`) in each of the 20 held-out faces, rounds the published image to
8 bits, and reports PSNR / SSIM against the cover and the bitwise accuracy of the extracted message with no
post-processing, after each differentiable noise layer at a fixed setting (`EVAL_NOISE`) and once the face is
replaced by the next one's in the batch. The evaluation with real codecs (Pillow) and simulated deepfakes is
projects/faceguard/evaluate.py.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import zoo
from zoo.errors import UserError
from zoo.metrics import bit_accuracy, psnr, ssim
from zoo.tasks.arrays import FaceTask
from zoo.tasks.base import averages
from zoo.tasks.inputs import NamedInputs
from zoo.watermark import manipulation, noise

# Fixed settings of the differentiable noise layers for the evaluation's bitwise accuracies.
EVAL_NOISE = {
    'jpeg50': functools.partial(noise.jpeg_at_quality, quality=50),
    'blur1': functools.partial(noise.blur_with_sigma, sigma=1.0),
    'crop70': lambda x: noise.crop_at(x, 0.7, (x.shape[1] - round(0.7 * x.shape[1])) // 2,
                                      (x.shape[2] - round(0.7 * x.shape[2])) // 2),
    'resize50': functools.partial(noise.resize_at, scale=0.5),
}


def _bce(logits, label: float):
  return jnp.mean(jnp.logaddexp(0.0, logits) - label * logits)


class WatermarkingTask(FaceTask):
  """FaceGuard's watermark on faces (and photographs), robust to the training noise layers."""
  TrainMetrics = averages('loss', 'image_mse', 'message_mse', 'bit_accuracy', 'psnr', 'grad_norm')
  EvalMetrics = averages('psnr', 'ssim', 'bit_accuracy', 'bit_accuracy_jpeg50', 'bit_accuracy_blur1',
                         'bit_accuracy_crop70', 'bit_accuracy_resize50', 'bit_accuracy_face_replaced')

  def __init__(self, config):
    super().__init__(config)
    size = config.input.image_size
    if size % 16:
      raise UserError(f'input.image_size must be a multiple of 16 (JPEG blocks, chroma subsampling), got {size}')
    unknown = set(config.noise_layers) - set(noise.NOISE_LAYERS)
    if unknown or not config.noise_layers:
      raise UserError(f'noise_layers {sorted(unknown) or "()"} invalid; choose from {", ".join(noise.NOISE_LAYERS)}')
    if config.loss.adversarial > 0 and not config.model_kwargs.get('critic', False):
      raise UserError('loss.adversarial > 0 needs the critic: set --config.model_kwargs.critic=True')

  @functools.cached_property
  def net(self):
    """The FaceGuard network, which the task applies by its methods (embed, decode, critique)."""
    return zoo.create_model(self.config.model, bn_axis_name='batch', **self.config.model_kwargs)

  @functools.cached_property
  def model(self):
    return NamedInputs(self.net, ('image', 'bits'))  # what the trainer initialises

  @property
  def bits(self) -> int:
    return self.config.model_kwargs.message_bits

  def init_inputs(self):
    size = self.config.input.image_size
    return {'image': jnp.zeros((1, size, size, 3), jnp.float32), 'bits': jnp.zeros((1, self.bits), jnp.float32)}

  def load_eval(self, image_size):
    """{'image', 'bits'}: the held-out faces and a fixed message for each, drawn from the seed."""
    bits = np.random.default_rng(self.config.seed).integers(0, 2, (len(self.eval_images), self.bits))
    return {'image': self.eval_images, 'bits': bits.astype(np.float32)}

  def train_loss(self, params, batch_stats, batch, rng):
    cover = batch['image'].astype(jnp.float32) / 255.0
    bits_rng, noise_rng = jax.random.split(rng)
    bits = jax.random.bernoulli(bits_rng, 0.5, (cover.shape[0], self.bits)).astype(jnp.float32)
    layers = tuple(self.config.noise_layers)
    critic = self.config.loss.adversarial > 0

    w = self.config.loss
    fragile = w.fragile > 0

    def forward(net, cover, bits):
      encoded = net.encode(cover, bits, train=True)
      seen = noise.random_noise(encoded, noise_rng, layers)
      if fragile:  # one decoder batch: the post-processed images, then the same with another image's face pasted in
        seen = jnp.concatenate([seen, manipulation.replace_face(encoded, jnp.roll(cover, 1, axis=0))])
      decoded = net.decode(seen, train=True)
      logits = (net.critique(cover, train=True), net.critique(jax.lax.stop_gradient(encoded), train=True)) \
          if critic else ()
      return encoded, decoded, logits

    (encoded, decoded, logits), updates = self.net.apply(
        {'params': params, 'batch_stats': batch_stats}, cover, bits, method=forward, mutable=['batch_stats'])
    decoded, replaced = decoded[:len(bits)], decoded[len(bits):]
    image_mse = jnp.mean(jnp.square(encoded - cover))
    message_mse = jnp.mean(jnp.square(decoded - bits))
    loss = w.image * image_mse + w.message * message_mse
    if fragile:  # nothing of the bits is left to read once the face is replaced: every output at 0.5
      loss += w.fragile * jnp.mean(jnp.square(replaced - 0.5))
    if critic:
      frozen = {**params, 'adversary': jax.lax.stop_gradient(params['adversary'])}
      fooled = self.net.apply({'params': frozen, 'batch_stats': batch_stats}, encoded, train=True,
                              method=self.net.critique, mutable=['batch_stats'])[0]
      loss += _bce(logits[0], 1.0) + _bce(logits[1], 0.0) + w.adversarial * _bce(fooled, 1.0)
    return loss, (updates['batch_stats'], {'image_mse': image_mse, 'message_mse': message_mse,
                                           'bit_accuracy': bit_accuracy(decoded, bits),
                                           'psnr': psnr(jnp.clip(encoded, 0.0, 1.0), cover)})

  def eval_outputs(self, params, batch_stats, batch):
    variables = {'params': params, 'batch_stats': batch_stats}
    cover, bits = batch['image'], batch['bits']
    published = jnp.round(self.net.apply(variables, cover, bits, method=self.net.embed) * 255.0) / 255.0

    def accuracy(image):
      return bit_accuracy(self.net.apply(variables, image, method=self.net.decode), bits)

    return {'psnr': psnr(published, cover), 'ssim': ssim(published, cover), 'bit_accuracy': accuracy(published),
            **{f'bit_accuracy_{name}': accuracy(jnp.clip(f(published), 0.0, 1.0)) for name, f in EVAL_NOISE.items()},
            'bit_accuracy_face_replaced': accuracy(manipulation.replace_face(published, jnp.roll(cover, 1, axis=0))),
            'mask': batch['mask']}
