"""Grey natural images for denoising (and MRI simulation): the photographs that ship inside scikit-image, or the
plug-and-play paper's own sets (BSD400 train, Set12, Set68) read from a directory.

'skimage' needs no download and is the default: ten photographs train, three others are held out. 'pnp' reads
`data_dir` laid out as the paper's repository, github.com/uclaopt/Provable_Plug_and_Play (zoo/inverse/paper_data.py):
split 'train' is BSD400, 'Set12' and 'Set68' are the test sets.
"""
import cv2
import numpy as np
import skimage.color
import skimage.data

from zoo.errors import DatasetError

SKIMAGE_SPLITS = {
    'train': ('astronaut', 'brick', 'chelsea', 'clock', 'coffee', 'grass', 'gravel', 'hubble_deep_field',
              'immunohistochemistry', 'rocket'),
    'test': ('camera', 'coins', 'moon'),
}
PNP_SPLITS = ('train', 'Set12', 'Set68')
DATASETS = ('skimage', 'pnp')


def _grey(image) -> np.ndarray:
  """float32 [H, W] in [0, 1]."""
  image = np.asarray(image)
  if image.ndim == 3:
    return skimage.color.rgb2gray(image[..., :3]).astype(np.float32)
  return (image.astype(np.float32) / 255.0) if image.dtype == np.uint8 else image.astype(np.float32)


def load(dataset: str, split: str, data_dir: str | None = None) -> list[np.ndarray]:
  """The images of `split` as float32 [H, W] arrays in [0, 1]."""
  if dataset == 'skimage':
    if split not in SKIMAGE_SPLITS:
      raise DatasetError(f"dataset 'skimage' has splits {sorted(SKIMAGE_SPLITS)}, not {split!r}")
    return [_grey(getattr(skimage.data, name)()) for name in SKIMAGE_SPLITS[split]]
  if dataset == 'pnp':
    if split not in PNP_SPLITS:
      raise DatasetError(f"dataset 'pnp' has splits {list(PNP_SPLITS)}, not {split!r}")
    if not data_dir:
      raise DatasetError("dataset 'pnp' needs --config.data_dir=DIR, the plug-and-play paper's data (train/, Set12/, "
                         'Set68/ from github.com/uclaopt/Provable_Plug_and_Play; layout in projects/pnp/README.md)')
    from zoo.inverse import paper_data
    return [np.asarray(im, np.float32) for im in paper_data.load_images(data_dir, split)]
  raise DatasetError(f'Unknown denoising dataset {dataset!r}; valid: {", ".join(DATASETS)}')


def patches(images: list[np.ndarray], size: int, stride: int, scales=(1.0,)) -> np.ndarray:
  """All size x size patches at `stride` of every image at each of `scales`, as uint8 [N, size, size, 1] (DnCNN's
  training set). A scale below 1 first resizes the uint8 image to int(side * scale) bicubically (OpenCV), as the
  DnCNN training data that the plug-and-play paper reuses does: scales (1, 0.9, 0.8, 0.7) turn BSD400's 400 180x180
  images into 238,400 patches of 40 at stride 10, where one scale gives 90,000."""
  out = []
  for image in images:
    pixels = np.round(np.asarray(image) * 255.0).astype(np.uint8)
    for scale in scales:
      h, w = int(pixels.shape[0] * scale), int(pixels.shape[1] * scale)
      scaled = pixels if scale == 1 else cv2.resize(pixels, (w, h), interpolation=cv2.INTER_CUBIC)
      for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
          out.append(scaled[top:top + size, left:left + size])
  if not out:
    raise DatasetError(f'no {size}x{size} patch fits in the training images')
  return np.stack(out)[..., None]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  h, w = image.shape
  if h < size or w < size:
    raise DatasetError(f'an evaluation image of {h}x{w} is smaller than input.eval_image_size={size}')
  top, left = (h - size) // 2, (w - size) // 2
  return image[top:top + size, left:left + size]
