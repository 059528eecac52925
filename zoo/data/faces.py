"""Faces that ship offline, for FaceGuard: scikit-image's `lfw_subset` (Labeled Faces in the Wild), and RGB photographs.

`lfw_subset` holds 100 grey 25x25 face crops (then 100 non-faces, unused). The first 80 faces train, the last 20
are held out; each is resized to the model's size and repeated to 3 channels, as the watermark works on RGB. The
RGB photographs (astronaut, chelsea, coffee, ...) add colour and texture to the watermark's training set: crops of
image_size at `stride` of each photograph, downscaled 2x first so that a crop holds objects rather than texture.
"""
import numpy as np
import skimage.data
import skimage.transform

from zoo.errors import DatasetError

NUM_FACES = 100
TRAIN_FACES = 80
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry', 'hubble_deep_field')


def lfw(split: str, size: int) -> np.ndarray:
  """Faces of `split` ('train': 80, 'test': 20) as float32 [N, size, size, 3] in [0, 1]."""
  faces = skimage.data.lfw_subset()[:NUM_FACES]
  if split == 'train':
    faces = faces[:TRAIN_FACES]
  elif split == 'test':
    faces = faces[TRAIN_FACES:]
  else:
    raise DatasetError(f"the lfw faces have splits 'train' and 'test', not {split!r}")
  resized = np.stack([skimage.transform.resize(f, (size, size), order=3, anti_aliasing=True) for f in faces])
  return np.repeat(np.clip(resized, 0, 1)[..., None], 3, axis=-1).astype(np.float32)


def photo_crops(size: int, stride: int) -> np.ndarray:
  """Crops of the RGB photographs as float32 [N, size, size, 3] in [0, 1]."""
  out = []
  for name in PHOTOS:
    image = skimage.transform.rescale(getattr(skimage.data, name)()[..., :3] / 255.0, 0.5, channel_axis=-1,
                                      anti_aliasing=True)
    h, w = image.shape[:2]
    out += [image[top:top + size, left:left + size] for top in range(0, h - size + 1, stride)
            for left in range(0, w - size + 1, stride)]
  return np.clip(np.stack(out), 0, 1).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
  return np.round(np.clip(images, 0, 1) * 255.0).astype(np.uint8)


def check_dataset(config) -> None:
  """The face tasks (watermarking, autoencoding) read dataset 'lfw' only."""
  if config.dataset != 'lfw':
    raise DatasetError(f"the face tasks read dataset 'lfw' (scikit-image's lfw_subset), not {config.dataset!r}")


def training_images(config) -> np.ndarray:
  """What the face tasks train on: uint8 [N, size, size, 3], the training faces and, with `input.photos`, crops of
  the photographs."""
  size = config.input.image_size
  train = lfw(config.train_split, size)
  if config.input.photos:
    train = np.concatenate([train, photo_crops(size, config.input.photo_stride)])
  return to_uint8(train)


def held_out(config) -> np.ndarray:
  """What the face tasks evaluate on: the held-out faces, float32 in [0, 1] but quantised to 8 bits, as published
  images are."""
  return to_uint8(lfw(config.eval_split, config.input.image_size)).astype(np.float32) / 255.0
