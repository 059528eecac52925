"""tf.data input for image classification: any TFDS dataset by name, or a folder of images.

Determinism is by construction: the example order comes from a seeded shuffle of the whole split, and every random
augmentation is stateless, seeded by (seed, position in the stream). Resuming at step k therefore skips k * batch
encoded records (no decoding) and continues with exactly the batches an uninterrupted run reads.

Every host reads that one global stream and keeps its rows of each global batch (host p the p-th slice of
batch_size / hosts) before decoding them, so a global batch holds the same examples, augmented the same way, on
any number of hosts: two hosts of two devices train the same parameters as one of four, and a run may resume on
another topology. The price is that each host reads every encoded record of the split (and decodes only its
own); the per-host file sharding of big_vision / flax's examples reads less on large pods but makes the batches a
function of the host count. Evaluation shards the split over the hosts: its metrics are sums over all examples.

Dense targets for token labelling (`input.token_labels=True`): every example then carries 'token_labels', an int
[H', W'] map of class indices over the whole image (any H', W'; e.g. the argmax of a dense annotator's score map).
Each training batch gets 'token_labels' [B, h, w] on the model's token grid: a token takes the label found under
its centre after the Inception crop and the flip, which it follows exactly. RandAugment's geometric ops and random
erasing leave the map as it is (TokenLabeling's own pipeline moves the map with rotations, shears and translations).
"""
import math
import os

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from zoo.data import augment
from zoo.errors import DatasetError
from zoo.data import mnist5k  # noqa: F401  (registers the offline dataset with TFDS)

# Builders that need no download: prepared on first use.
OFFLINE_DATASETS = {'mnist5k'}
IMAGE_FOLDER = 'image_folder'


def get_builder(name: str, data_dir: str | None):
  """Returns a prepared TFDS builder, or raises DatasetError with the command that prepares it."""
  if name == IMAGE_FOLDER:
    if not data_dir or not os.path.isdir(data_dir):
      raise DatasetError(f'image_folder needs --config.data_dir=ROOT with ROOT/<split>/<class>/<image>; '
                         f'{data_dir!r} is not a directory')
    return tfds.folder_dataset.ImageFolder(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetError(f'Unknown TFDS dataset {name!r}; see `tfds.list_builders()` or use '
                       'dataset=image_folder') from None
  if not builder.is_prepared():
    if name in OFFLINE_DATASETS:
      builder.download_and_prepare()
    else:
      raise DatasetError(
          f'Dataset {name!r} is not prepared in {builder.data_dir}: run `tfds build {name} --data_dir=DIR` and pass '
          f'--config.data_dir=DIR (imagenet2012 needs its tar files in DIR/downloads/manual first)')
  return builder


def split_size(builder, split: str) -> int:
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    raise DatasetError(f'Dataset {builder.name!r} has no split {split!r}; '
                       f'splits: {sorted(builder.info.splits)}') from None


def num_classes(builder) -> int:
  return builder.info.features['label'].num_classes


def readable_size(builder, split: str) -> int:
  """Examples of `split` in the stream: an image folder's images less the undecodable ones."""
  if isinstance(builder, tfds.folder_dataset.ImageFolder):
    return split_size(builder, split) - len(unreadable_images(builder, split))
  return split_size(builder, split)


def host_split_size(builder, split: str, index: int, count: int) -> int:
  """Examples of `split` that host `index` of `count` evaluates."""
  if isinstance(builder, tfds.folder_dataset.ImageFolder):
    return len(range(index, readable_size(builder, split), count))
  return split_size(builder, tfds.split_for_jax_process(split, process_index=index, process_count=count))


def unreadable_images(builder, split: str) -> list[tuple[str, str]]:
  """(path, error) of each image of an image-folder split that TensorFlow cannot decode.

  A TFDS dataset was checked when it was prepared; a folder is whatever the user copied, so each of its images is
  decoded once per run (cached on the builder, shared by the train and eval pipelines) and the unreadable ones are
  logged, counted and left out of the stream before it is sharded, shuffled or resumed: the order stays a
  function of the seed. `check_images` makes them fatal instead."""
  cache = builder.__dict__.setdefault('_zoo_unreadable', {})
  if split not in cache:
    bad = []
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})
    for example in ds:
      try:
        tf.io.decode_image(example['image'], expand_animations=False)
      except tf.errors.OpError as e:
        bad.append((example['image/filename'].numpy().decode(), e.message.splitlines()[0]))
    if bad:
      logging.warning('%d of %d images of split %r cannot be decoded and are skipped (input.corrupt_images=error '
                      'makes this fatal): %s', len(bad), split_size(builder, split), split,
                      '; '.join(f'{p}: {m}' for p, m in bad[:5]) + ('; ...' if len(bad) > 5 else ''))
    cache[split] = sorted(bad)
  return cache[split]


def check_images(builder, split: str, policy: str) -> None:
  """Scans an image-folder split (see `unreadable_images`); with policy 'error' an unreadable image is a
  DatasetError. Other datasets are left alone."""
  if policy not in ('skip', 'error'):
    raise DatasetError(f"input.corrupt_images must be 'skip' or 'error', got {policy!r}")
  if not isinstance(builder, tfds.folder_dataset.ImageFolder):
    return
  bad = unreadable_images(builder, split)
  if bad and policy == 'error':
    raise DatasetError(f'{len(bad)} images of split {split!r} cannot be decoded, e.g. {bad[0][0]} ({bad[0][1]}); '
                       "remove or replace them, or set --config.input.corrupt_images=skip")


def _read(builder, split: str, shard: bool) -> tf.data.Dataset:
  """`split` in file order, images left encoded: all of it, or this host's shard."""
  options = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
  skip = {'image': tfds.decode.SkipDecoding()}
  if isinstance(builder, tfds.folder_dataset.ImageFolder):  # no sub-splits: shard the records
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=options, decoders=skip)
    bad = [path for path, _ in unreadable_images(builder, split)]
    if bad:
      bad = tf.constant(bad)
      ds = ds.filter(lambda example: tf.logical_not(tf.reduce_any(tf.equal(example['image/filename'], bad))))
    return ds.shard(jax.process_count(), jax.process_index()) if shard else ds
  return builder.as_dataset(split=tfds.split_for_jax_process(split) if shard else split, shuffle_files=False,
                            read_config=options, decoders=skip)


def host_rows(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """This host's rows of every global batch of `batch_size` in a stream of (position, example) pairs: host p keeps
  rows [p * b, (p + 1) * b) of each, b = batch_size / hosts, in the order its devices take them."""
  hosts = jax.process_count()
  if hosts == 1:
    return ds
  rows, host = batch_size // hosts, jax.process_index()
  return ds.filter(lambda position, *_: position % batch_size // rows == host)


def _to_uint8(x):
  return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _image_shape(encoded, channels: int):
  """[H, W] of an encoded image: from the header of a JPEG, by decoding anything else."""
  return tf.cond(tf.io.is_jpeg(encoded), lambda: tf.image.extract_jpeg_shape(encoded)[:2],
                 lambda: tf.shape(tf.io.decode_image(encoded, channels=channels, expand_animations=False))[:2])


def crop_token_labels(token_labels, image_hw, offset, size, grid: tuple[int, int]):
  """Labels of the grid's tokens for the crop box (offset, size) of an image of `image_hw`: each token takes the
  label of `token_labels` (a map over the whole image) under its centre, the point of the crop that the resize puts
  at the token's centre."""
  axes = []
  for a in range(2):
    n = tf.shape(token_labels)[a]
    centres = (tf.cast(offset[a], tf.float32)
               + (tf.range(grid[a], dtype=tf.float32) + 0.5) * tf.cast(size[a], tf.float32) / grid[a])
    index = tf.cast(tf.floor(centres * tf.cast(n, tf.float32) / tf.cast(image_hw[a], tf.float32)), tf.int32)
    axes.append(tf.clip_by_value(index, 0, n - 1))
  out = tf.gather(tf.gather(token_labels, axes[0], axis=0), axes[1], axis=1)
  out.set_shape(grid)
  return out


def check_split_fits(builder, split: str, batch_size: int) -> int:
  """The training split's readable examples; fewer than one global batch is a DatasetError (batches drop no
  example of an epoch but the remainder, so such a split would never fill one)."""
  n = readable_size(builder, split)
  if n < batch_size:
    raise DatasetError(f'split {split!r} has {n} readable examples, fewer than one batch ({batch_size}): lower '
                       '--config.batch_size or add data')
  return n


def train_dataset(builder, cfg, seed: int, start_step: int = 0,
                  token_grid: tuple[int, int] | None = None) -> tf.data.Dataset:
  """Endless, shuffled, augmented batches of this host (its rows of each global batch of `cfg.batch_size`); starts
  at global step `start_step`.

  With `token_grid` (h, w) the batches also hold the examples' 'token_labels' on that grid (module docstring)."""
  inp = cfg.input
  n = check_split_fits(builder, cfg.train_split, cfg.batch_size)
  stream_seed = tf.constant([seed, 0], tf.int64)  # the key of host 0 when hosts drew their own: same stream as then
  ds = _read(builder, cfg.train_split, shard=False)
  ds = ds.shuffle(min(n, inp.shuffle_buffer), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = host_rows(ds.enumerate().skip(start_step * cfg.batch_size), cfg.batch_size)
  mean, std = inp.mean, inp.std

  def preprocess(index, example):
    # A split's first seeds do not depend on their count: the crop, flip and RandAugment draws predate erasing's.
    seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(stream_seed, index), 4)
    image = augment.decode_and_inception_crop(example['image'], seeds[0], inp.image_size, channels=inp.channels,
                                              area_range=tuple(inp.area_range))
    if inp.flip:
      image = augment.random_flip(image, seeds[1])
    if inp.randaugment_layers > 0:
      image = tf.cast(augment.rand_augment(_to_uint8(image), seeds[2], inp.randaugment_layers,
                                           inp.randaugment_magnitude, inp.randaugment_magnitude_std,
                                           ops=tuple(inp.randaugment_ops) or None), tf.float32)
    image = augment.normalize(image, mean, std)
    if inp.random_erasing > 0:
      image = augment.random_erasing(image, seeds[3], inp.random_erasing)
    out = {'image': image, 'label': tf.cast(example['label'], tf.int32)}
    if token_grid:
      # The crop box is a function of the image's shape and the seed: the same box the image was cut with.
      image_hw = _image_shape(example['image'], inp.channels)
      offset, size = augment.sample_crop_box(image_hw, seeds[0], tuple(inp.area_range))
      tokens = crop_token_labels(tf.cast(example['token_labels'], tf.int32), image_hw, offset, size, token_grid)
      out['token_labels'] = augment.random_flip(tokens, seeds[1]) if inp.flip else tokens
    return out

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(cfg.batch_size // jax.process_count(), drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_steps(builder, split: str, local_batch: int) -> int:
  """Steps that cover the largest host shard; every host runs the same number (collectives need it)."""
  count = jax.process_count()
  return math.ceil(max(host_split_size(builder, split, p, count) for p in range(count)) / local_batch)


def eval_batches(builder, cfg, split: str, local_batch: int, image_size: int | None = None):
  """Yields numpy batches {'image', 'label', 'mask'}; the last is zero-padded and masked, never dropped."""
  inp = cfg.input
  size = image_size or inp.eval_image_size or inp.image_size

  def preprocess(example):
    image = tf.io.decode_image(example['image'], channels=inp.channels, expand_animations=False)
    image = augment.resize_and_center_crop(image, size, inp.crop_pct)
    return {'image': augment.normalize(image, inp.mean, inp.std), 'label': tf.cast(example['label'], tf.int32)}

  ds = _read(builder, split, shard=True).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch).prefetch(tf.data.AUTOTUNE)
  steps = eval_steps(builder, split, local_batch)
  empty = {'image': np.zeros((local_batch, size, size, inp.channels), np.float32),
           'label': np.zeros((local_batch,), np.int32)}
  it = iter(tfds.as_numpy(ds))
  for _ in range(steps):
    batch = next(it, None) or {k: v[:0] for k, v in empty.items()}
    valid = len(batch['label'])
    pad = local_batch - valid
    yield {'image': np.concatenate([batch['image'], empty['image'][:pad]]),
           'label': np.concatenate([batch['label'], empty['label'][:pad]]),
           'mask': np.concatenate([np.ones(valid, np.float32), np.zeros(pad, np.float32)])}
