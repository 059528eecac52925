"""PD-Net (Cheng et al. 2019) MRI reconstruction: `--config=configs/pdnet.py:MASK-ACCEL`.

MASK is the sampling pattern of zoo/inverse/mri.py (cartesian, radial or random), ACCEL the acceleration (the
sampling rate is 1 / ACCEL), e.g. cartesian-4 or random-8. One mask, drawn from `kspace.mask_seed`, serves every
image. The network of Learned Primal-Dual (Adler & Oktem 2018), which PD-Net builds on: 10 iterations, 5 primal and
5 dual memory channels, 32 features; trained with MSE, Adam 1e-3 with cosine decay as LPD (no warm-up, no weight
decay, no EMA), batch 8.

The default data ships offline: 128x128 crops of scikit-image's photographs with a smooth random phase
(zoo/tasks/reconstruction.py). PD-Net's paper trained on 256x256 brain slices; fastMRI's single-coil knees are
`--config.dataset=fastmri --config.data_dir=DIR --config.eval_split=val` with DIR/train/*.h5 and DIR/val/*.h5
(zoo/data/fastmri.py), at `input.image_size` after the 320x320 crop (`input.crop`).

`kspace.noise_std` adds complex Gaussian noise of that standard deviation per real and imaginary part to the
simulated k-space (orthonormal FFT, images in [0, 1]). It is 0 by default, as in retrospective undersampling of
measured data, which carries its own noise; 0.01 puts the noise of a fully sampled image at about 40 dB PSNR.
"""
import math

import ml_collections

from configs import common

MASKS = ('cartesian', 'radial', 'random')


def parse(arg: str):
  mask, _, accel = arg.partition('-')
  if mask not in MASKS or not accel:
    raise ValueError(f'config argument must be MASK-ACCEL with MASK in {MASKS} and ACCEL the acceleration, '
                     f'e.g. cartesian-4; got {arg!r}')
  try:
    value = float(accel)
  except ValueError:
    value = 0.0
  if not (math.isfinite(value) and value >= 1.0):
    raise ValueError(f'ACCEL must be a number >= 1 (the sampling rate is 1 / ACCEL), got {accel!r}')
  return mask, value


def get_config(arg: str = 'cartesian-4'):
  mask, accel = parse(arg)
  c = common.trainer()
  c.task = 'reconstruction'
  c.model = 'pdnet'
  c.model_kwargs = ml_collections.ConfigDict(dict(
      relaxation='learned', iterations=10, primal_channels=5, dual_channels=5, features=32, dtype='float32'))
  c.dataset = 'skimage'  # or 'fastmri' with data_dir (zoo/data/fastmri.py)
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = 'train'
  c.eval_split = 'test'  # fastmri: the sub-folder of data_dir, e.g. val
  # patch_stride: of the training crops of the photographs; crop: fastMRI's field of view before resizing.
  c.input = ml_collections.ConfigDict(dict(image_size=128, patch_stride=64, crop=320))
  c.kspace = ml_collections.ConfigDict(dict(mask=mask, accel=accel, mask_seed=0, noise_std=0.0))

  common.image_to_image(c, batch_size=8, log_every=100, eval_every=1000)
  c.num_epochs = 150.0  # 531 offline crops: 66 steps an epoch, ~10k steps
  c.warmup_epochs = 0.0
  return c
