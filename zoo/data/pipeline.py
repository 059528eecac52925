"""Classification input with grain over random-access sources (zoo/data/sources.py): no TensorFlow.

Training. The stream is a seeded shuffle of the split, reshuffled each epoch; example i of the stream is augmented
(Inception crop, flip, RandAugment, the random-erasing box, zoo/data/transforms.py and randaugment.py) with a
generator seeded by (seed, i). It is cut into sub-batches of `batch_size / hosts` rows; global batch k is
sub-batches k * hosts ... k * hosts + hosts - 1 and host p takes the p-th. grain's datasets are lazy and random
access, so a host reads and decodes only the records of its own rows, and resuming at step k indexes the stream at
step k without reading anything before it. A global batch is therefore the same on any number of hosts, of threads
and of worker processes, and after a resume.

Batches leave the host as uint8 images with int32 labels (plus 'erase' boxes, int32 [B, 4], with random erasing,
and 'token_labels' with `token_grid`); the training step normalises them and fills the boxes with noise
(zoo/tasks/classification.py), which moves a quarter of the bytes of float32 batches to the device.

Dense targets for token labelling (`input.token_labels=True`): every example then carries 'token_labels', an int
[H', W'] map of class indices over the whole image. A token takes the label found under its centre after the
Inception crop and the flip, which it follows exactly; RandAugment's geometric ops and random erasing leave the map
as it is (TokenLabeling's own pipeline moves the map with rotations, shears and translations).

Evaluation. Host p reads the p-th contiguous slice of the split; the last batch is zero-padded and masked, and every
host runs as many batches as the largest slice needs.
"""
import math
import os

import cv2
import grain
from absl import flags
import jax
import numpy as np

from zoo.data import randaugment, transforms
from zoo.errors import DatasetError


def check_split_fits(data, split: str, batch_size: int) -> int:
  """The training split's readable examples; fewer than one global batch is a DatasetError (an epoch drops only its
  remainder, so such a split would never fill one)."""
  n = data.size(split)
  if n < batch_size:
    raise DatasetError(f'split {split!r} has {n} readable examples, fewer than one batch ({batch_size}): lower '
                       '--config.batch_size or add data')
  return n


class TrainTransform:
  """A training record -> an augmented example, every draw from the generator grain seeds by stream position."""

  def __init__(self, inp, token_grid: tuple[int, int] | None = None):
    # Plain values: a ConfigDict lookup per example costs as much as cropping a small image.
    self.size, self.channels, self.area_range, self.flip = inp.image_size, inp.channels, tuple(inp.area_range), inp.flip
    self.randaugment = (inp.randaugment_layers, inp.randaugment_magnitude, inp.randaugment_magnitude_std,
                        randaugment.check_ops(tuple(inp.randaugment_ops)))
    self.erasing, self.token_grid = inp.random_erasing, token_grid

  def __call__(self, record: dict, rng: np.random.Generator) -> dict:
    image, image_hw, offset, size = transforms.decode_and_inception_crop(
        record['image'], rng, self.size, self.channels, self.area_range)
    flip = self.flip and rng.random() < 0.5
    if flip:
      image = cv2.flip(image, 1).reshape(image.shape)  # 7 us at 224x224x3; copying image[:, ::-1]: 400
    if self.randaugment[0] > 0:
      image = randaugment.rand_augment(image, rng, *self.randaugment)
    out = {'image': np.ascontiguousarray(image), 'label': np.int32(record['label'])}
    if self.erasing > 0:
      out['erase'] = transforms.sample_erase_box(image.shape[:2], rng, self.erasing)
    if self.token_grid:
      tokens = transforms.crop_token_labels(np.asarray(record['token_labels']), image_hw, offset, size,
                                            self.token_grid)
      out['token_labels'] = np.ascontiguousarray(tokens[:, ::-1] if flip else tokens)
    return out


def read_all(source) -> list:
  """Every record of `source`, in order, held in host memory (`input.cache`): for small splits, whose records
  would otherwise be read and parsed again every epoch (a fifth of a millisecond each from TFDS, more than the
  augmentation of a small image). Every host then reads the whole split, once."""
  getitems = getattr(source, '__getitems__', None)
  return list(getitems(range(len(source)))) if getitems else [source[i] for i in range(len(source))]


def _read_options(threads: int) -> grain.ReadOptions:
  threads = threads or os.cpu_count() or 1
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)


def train_dataset(data, cfg, seed: int, token_grid: tuple[int, int] | None = None) -> grain.MapDataset:
  """The global stream as a grain MapDataset of this host's sub-batches: element k is its rows of global batch k
  (module docstring). Reads nothing until indexed."""
  check_split_fits(data, cfg.train_split, cfg.batch_size)
  hosts = jax.process_count()
  source = data.source(cfg.train_split)
  if cfg.input.cache:
    source = read_all(source)
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
  ds = ds.random_map(TrainTransform(cfg.input, token_grid), seed=seed)
  return ds.batch(cfg.batch_size // hosts).slice(slice(jax.process_index(), None, hosts))


def train_batches(data, cfg, seed: int, start_step: int = 0, token_grid: tuple[int, int] | None = None):
  """Endless numpy batches of this host from global step `start_step` on, prepared ahead by `input.threads` threads
  (0: one per core) in this process, or by `input.workers` processes when that is above 0."""
  ds = train_dataset(data, cfg, seed, token_grid)[start_step:]
  it = ds.to_iter_dataset(_read_options(cfg.input.threads))
  if cfg.input.workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags; called as a library, nothing parsed them
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.input.workers))
  return iter(it)


def host_slice(n: int, index: int, count: int) -> range:
  """The contiguous examples of `n` that host `index` of `count` evaluates."""
  return range(index * n // count, (index + 1) * n // count)


def eval_steps(data, split: str, local_batch: int) -> int:
  """Batches that cover the largest host slice; every host runs the same number (collectives need it)."""
  n, count = data.size(split), jax.process_count()
  return math.ceil(max(len(host_slice(n, p, count)) for p in range(count)) / local_batch)


class EvalTransform:
  """Resize and centre crop: OpenCV's bilinear resize, or with `interpolation` ('bicubic', 'bilinear') the
  evaluation of published weights (Pillow's filter, as timm: transforms.published_eval_transform)."""

  def __init__(self, size: int, channels: int, crop_pct: float, interpolation: str | None = None):
    self.size, self.channels, self.crop_pct, self.interpolation = size, channels, crop_pct, interpolation

  def __call__(self, record: dict) -> dict:
    image = transforms.decode(record['image'], self.channels)
    if self.interpolation:
      image = transforms.published_eval_transform(image, self.size, self.crop_pct, self.interpolation)
    else:
      image = transforms.resize_and_center_crop(image, self.size, self.crop_pct)
    return {'image': image, 'label': np.int32(record['label'])}


def eval_batches(data, cfg, split: str, local_batch: int, image_size: int | None = None):
  """Yields numpy batches {'image' uint8, 'label', 'mask'} of this host's slice; the last is zero-padded and
  masked, never dropped."""
  inp = cfg.input
  size = image_size or inp.eval_image_size or inp.image_size
  source = data.source(split)
  rows = host_slice(len(source), jax.process_index(), jax.process_count())
  transform = EvalTransform(size, inp.channels, inp.crop_pct, inp.get('interpolation'))
  ds = grain.MapDataset.source(source)[rows.start:rows.stop].map(transform)
  batches = iter(ds.batch(local_batch).to_iter_dataset(_read_options(inp.threads)))
  empty = {'image': np.zeros((local_batch, size, size, inp.channels), np.uint8),
           'label': np.zeros((local_batch,), np.int32)}
  for _ in range(eval_steps(data, split, local_batch)):
    batch = next(batches, None) or {k: v[:0] for k, v in empty.items()}
    valid = len(batch['label'])
    pad = local_batch - valid
    yield {'image': np.concatenate([batch['image'], empty['image'][:pad]]),
           'label': np.concatenate([batch['label'], empty['label'][:pad]]),
           'mask': np.concatenate([np.ones(valid, np.float32), np.zeros(pad, np.float32)])}
