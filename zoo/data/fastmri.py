"""fastMRI single-coil knee slices (Zbontar et al. 2018) as complex ground-truth images for zoo/inverse/mri.py.

Layout: `data_dir/<split>/*.h5`, e.g. train/ and val/ holding (links to) the files of singlecoil_train/ and
singlecoil_val/. Each file holds `kspace`, complex64 [slices, H, W], fully sampled and centred (DC in the middle,
the fftshifted layout), and `reconstruction_esc`, float32 [slices, 320, 320], the magnitude of the centred inverse
FFT cropped to 320 x 320 (any square crop is read). singlecoil_test/ holds undersampled k-space without it and
cannot serve.

The ground truth of a slice is complex: fftshift(ifft2(ifftshift(kspace))) (orthonormal), centre-cropped to
`crop` x `crop` (default 320, reconstruction_esc's field of view), divided by the largest magnitude of the
volume's crops so that magnitudes lie in [0, 1] (with crop 320 that is max reconstruction_esc when the file's FFT is
orthonormal; our own maximum keeps the scale independent of the normalisation the file was written with), then
resized to `size` x `size` when size differs from crop: real and imaginary parts by skimage.transform.resize with
anti-aliasing, whose non-negative weights keep magnitudes in [0, 1]. Every volume is first checked against its
reconstruction_esc at the file's crop (both scaled to peak 1), and its k-space must peak (DC) near the centre: that
catches files of another layout.

The measured phase is kept. The task recomputes k-space with our unshifted operator (fft2c of this image, the
k-space of the cropped field of view) and masks it there: only the sampling is simulated, as in fastMRI's own
single-coil benchmark, which masks the fully sampled k-space retrospectively.

Everything is read into memory: at size 128 a slice takes 128 KiB, the 35k slices of singlecoil_train 4.5 GiB.
"""
import glob
import os

import h5py
import numpy as np
import skimage.transform

from zoo.errors import DatasetError

KEYS = ('kspace', 'reconstruction_esc')
ESC_CROP = 320
# Largest |ours - reconstruction_esc| allowed, both at peak 1: float32 round-off is ~1e-6, a wrong layout ~1.
ESC_TOLERANCE = 1e-3


def files(data_dir: str | None, split: str) -> list[str]:
  """The .h5 files of `split`, sorted, or DatasetError saying what is expected."""
  folder = os.path.join(data_dir or '', split)
  if not data_dir or not os.path.isdir(folder):
    raise DatasetError(f"dataset 'fastmri' needs --config.data_dir=DIR with DIR/{split}/*.h5 (fastMRI single-coil "
                       f'files); {folder!r} is not a directory')
  found = sorted(glob.glob(os.path.join(folder, '*.h5')))
  if not found:
    raise DatasetError(f'{folder} holds no .h5 files; expected fastMRI single-coil files with {" and ".join(KEYS)}')
  return found


def centre_crop(x: np.ndarray, size: int) -> np.ndarray:
  """The central size x size of [..., H, W], with fastMRI's offsets ((H - size) // 2)."""
  h, w = x.shape[-2:]
  top, left = (h - size) // 2, (w - size) // 2
  return x[..., top:top + size, left:left + size]


def volume_images(kspace: np.ndarray, esc: np.ndarray, size: int, crop: int = ESC_CROP,
                  name: str = 'volume') -> np.ndarray:
  """complex64 [slices, size, size]: the ground truth of one volume's centred k-space (see the module docstring)."""
  if min(kspace.shape[-2:]) < max(crop, esc.shape[-1]):
    raise DatasetError(f'{name}: k-space of {kspace.shape[-2:]} is smaller than the {crop}x{crop} crop or '
                       f'reconstruction_esc {esc.shape}')
  # A k-space shift only multiplies the image by a checkerboard, invisible in magnitudes: find DC instead.
  energy = np.abs(kspace).sum(axis=0)
  peak = np.unravel_index(np.argmax(energy), energy.shape)
  if any(abs(int(p) - n // 2) > n // 8 for p, n in zip(peak, energy.shape)):
    raise DatasetError(f'{name}: the k-space peak (DC) lies at {tuple(map(int, peak))}, far from the centre of '
                       f'{energy.shape}; expected centred (fftshifted) single-coil k-space')
  image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm='ortho'), axes=(-2, -1))
  check = np.abs(centre_crop(image, esc.shape[-1]))
  esc = np.asarray(esc, np.float32)
  if esc.shape != check.shape or np.abs(check / check.max() - esc / esc.max()).max() > ESC_TOLERANCE:
    raise DatasetError(f'{name}: reconstruction_esc {esc.shape} is not |centre crop of the inverse FFT| of its '
                       f'k-space {kspace.shape}; expected fastMRI single-coil files')
  image = centre_crop(image, crop)
  image = image / np.abs(image).max()
  if size != crop:
    parts = np.stack([image.real, image.imag], axis=-1)
    parts = np.stack([skimage.transform.resize(p, (size, size), anti_aliasing=True) for p in parts])
    image = parts[..., 0] + 1j * parts[..., 1]
  return image.astype(np.complex64)


def load(data_dir: str | None, split: str, size: int, crop: int = ESC_CROP) -> np.ndarray:
  """complex64 [slices, size, size] of every volume of `split`, in file order."""
  out = []
  for path in files(data_dir, split):
    with h5py.File(path, 'r') as f:
      missing = [k for k in KEYS if k not in f]
      if missing:
        raise DatasetError(f'{path} lacks {", ".join(missing)}; fastMRI single-coil files hold {" and ".join(KEYS)}')
      out.append(volume_images(f['kspace'][()], f['reconstruction_esc'][()], size, crop, name=path))
  return np.concatenate(out)
