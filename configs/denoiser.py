"""Denoisers of the plug-and-play paper: `--config=configs/denoiser.py:NET-SN-SIGMA`.

NET is dncnn or simplecnn, SN is none, standard or real (zoo/models/spectral_norm.py), SIGMA is the noise level in
/255 units (5, 15, 40 as the paper; any positive number works) or 'blind' (sigma drawn from U(0, 55)/255 per patch).
The paper's recipe (Ryu et al., ICML 2019, after DnCNN): 40x40 patches at stride 10 of the training images at
scales 1, 0.9, 0.8 and 0.7, batch 128, 50 epochs, Adam 1e-3 divided by 10 half way, no weight decay, no EMA.

The default data ships offline (scikit-image's photographs, zoo/data/natural_images.py); the paper's BSD400 / Set12
(github.com/uclaopt/Provable_Plug_and_Play) are `--config.dataset=pnp --config.data_dir=DIR --config.eval_split=Set12`.
"""
import ml_collections

from configs import common

NETS = ('dncnn', 'simplecnn')
SPECTRAL_NORMS = {'none': None, 'standard': 'standard', 'real': 'real'}


def parse(arg: str):
  parts = arg.split('-')
  if len(parts) != 3 or parts[0] not in NETS or parts[1] not in SPECTRAL_NORMS:
    raise ValueError(f'config argument must be NET-SN-SIGMA with NET in {NETS}, SN in {tuple(SPECTRAL_NORMS)} and '
                     f'SIGMA a number or blind, e.g. simplecnn-real-15; got {arg!r}')
  net, sn, sigma = parts
  if sigma != 'blind' and not sigma.replace('.', '', 1).isdigit():
    raise ValueError(f'SIGMA must be a number (in /255 units) or blind, got {sigma!r}')
  return net, SPECTRAL_NORMS[sn], 0.0 if sigma == 'blind' else float(sigma)


def get_config(arg: str = 'simplecnn-real-15'):
  net, sn, sigma = parse(arg)
  c = common.trainer()
  c.task = 'denoising'
  c.model = net
  c.model_kwargs = ml_collections.ConfigDict(dict(spectral_norm=sn, lipschitz=1.0, dtype='float32'))
  c.dataset = 'skimage'  # or 'pnp' with data_dir (zoo/data/natural_images.py)
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = 'train'
  c.eval_split = 'test'
  # The DnCNN training data the paper reuses: 40x40 patches at stride 10 of the images at 4 scales (bicubic).
  c.input = ml_collections.ConfigDict(dict(patch_size=40, patch_stride=10, patch_scales=(1.0, 0.9, 0.8, 0.7),
                                           eval_image_size=256))
  c.noise = ml_collections.ConfigDict(dict(sigma=sigma, blind_max=55.0, eval_sigma=25.0 if sigma == 0 else 0.0))

  # No EMA: the trained weights are evaluated, with the power-iteration vectors that belong to them.
  common.image_to_image(c, batch_size=128, log_every=50, eval_every=500)
  c.num_epochs = 50.0
  c.schedule = 'step'
  c.lr_step_boundaries = (0.5,)
  c.lr_step_factor = 0.1
  return c
