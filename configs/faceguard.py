"""FaceGuard watermark (`--config=configs/faceguard.py`) and its stand-in deepfake generator.

- '' (default): `faceguard` with the spatial message layout (zoo/models/faceguard.py): 32 bits in 64x64 RGB images,
  image MSE x 2 + message MSE x 1 + fragility x 1, one noise layer per batch among identity / JPEG / blur / crop /
  resize, Adam 1e-3 with cosine decay, batch 16, on lfw_subset's 80 training faces and crops of RGB photographs.
  HiDDeN weighs the image 0.7 (Zhu et al., ECCV 2018); with the spatial layout that left the held-out faces at 24.5 dB
  PSNR after 2,000 steps at 32x32, where 2 gives 28.4 dB at the same bitwise accuracies (both without the
  fragility term). The fragility term (zoo/tasks/watermarking.py) asks for outputs of 0.5, no bits, once the face
  region is replaced.
- 'critic': the same with HiDDeN's adversary (weight 1e-3).
- 'hidden': HiDDeN's own networks (the message broadcast to every pixel, 7 decoder blocks, global pooling) and
  loss (image weight 0.7, no fragility term).
- 'autoencoder': `face_autoencoder`, trained to re-synthesise the training faces (MSE), the deepfake stand-in of
  projects/faceguard/evaluate.py: a generator that never saw a watermark.
"""
import ml_collections

from configs import common

VARIANTS = ('', 'critic', 'hidden', 'autoencoder')


def get_config(arg: str = ''):
  if arg not in VARIANTS:
    raise ValueError(f'config argument must be one of {VARIANTS} (empty: the default), got {arg!r}')
  c = common.trainer()
  c.dataset = 'lfw'
  c.train_split = 'train'
  c.eval_split = 'test'
  c.input = ml_collections.ConfigDict(dict(image_size=64, photos=True, photo_stride=32))
  common.image_to_image(c, batch_size=16, log_every=100, eval_every=1000)
  c.num_train_steps = 4000
  c.warmup_epochs = 0.0
  if arg == 'autoencoder':
    c.task = 'autoencoding'
    c.model = 'face_autoencoder'
    c.model_kwargs = ml_collections.ConfigDict(dict(levels=3, features=64, bottleneck=16, dtype='float32'))
    c.input.photos = False
    return c
  c.task = 'watermarking'
  c.model = 'faceguard'
  c.model_kwargs = ml_collections.ConfigDict(dict(
      message_bits=32, encoder_blocks=4, decoder_blocks=7 if arg == 'hidden' else 4, features=64,
      message_layout='broadcast' if arg == 'hidden' else 'spatial', message_grid=8, critic=arg == 'critic',
      dtype='float32'))
  c.noise_layers = ('identity', 'jpeg', 'blur', 'crop', 'resize')
  c.loss = ml_collections.ConfigDict(dict(image=0.7 if arg == 'hidden' else 2.0, message=1.0,
                                          adversarial=1e-3 if arg == 'critic' else 0.0,
                                          fragile=0.0 if arg == 'hidden' else 1.0))
  return c
