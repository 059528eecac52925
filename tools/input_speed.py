"""The zoo's training input beside two references, one thread each, in the same minutes:

  python tools/input_speed.py --data_dir=DIR [--synthetic=500] [--image_size=224] [--batch_size=64] \
      [--steps=4] [--rounds=3] [--paths=zoo,tfdata,timm]

- zoo: zoo/data/pipeline.py with one thread, the volo_d1 (224) recipe (Inception crop, flip, RandAugment 2 layers at
  magnitude 9 with noise 0.5, the random-erasing box), uint8 batches: what `zoo-benchmark --mode=input
  --model=volo_d1 --threads=1` times.
- tfdata: the tf.data path the zoo used until 2026-12 (tools/tf_augment.py, the same recipe, float32 normalised
  batches with the erasing applied on the host, as it produced them), its map on a private pool of one thread.
- timm: timm's training transform, `create_transform(SIZE, is_training=True, auto_augment='rand-m9-mstd0.5',
  use_prefetcher=True)` (Pillow; uint8 out, its normalisation and erasing happen on the accelerator) on images
  loaded as timm's ImageDataset loads them, stacked into a uint8 batch: one DataLoader worker's work. timm applies
  each of the two RandAugment layers with probability 1/2 (its ops' p=0.5); the zoo's layers always apply (Identity
  is among their choices).

Each round of each path is a process of its own (rounds interleaved: zoo, tfdata, timm, zoo, ...), timed from its
first batch on. Prints one JSON line per path: images_per_sec of the median round, with the slowest and fastest.
Needs TensorFlow for tfdata and torch + torchvision + timm for timm; none is a dependency of the zoo.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def zoo_batches(data_dir, size, batch):
  from zoo import cli
  from zoo.data import pipeline, sources
  c = cli.config_module('configs/volo.py').get_config(f'd1-{size}')  # run from the repository root
  c.dataset, c.data_dir, c.train_split, c.batch_size = 'image_folder', data_dir, 'train', batch
  c.input.threads, c.input.workers = 1, 0
  return pipeline.train_batches(sources.open_dataset('image_folder', data_dir), c, seed=0)


def tfdata_batches(files, size, batch):
  import tensorflow as tf
  import tf_augment  # tools/, this script's folder, is on the import path
  tf.config.set_visible_devices([], 'GPU')
  mean = [m * 255 for m in (0.485, 0.456, 0.406)]
  std = [s * 255 for s in (0.229, 0.224, 0.225)]
  stream_seed = tf.constant([0, 0], tf.int64)

  def preprocess(index, path):
    seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(stream_seed, index), 4)
    image = tf_augment.decode_and_inception_crop(tf.io.read_file(path), seeds[0], size, channels=3)
    image = tf_augment.random_flip(image, seeds[1])
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    image = tf.cast(tf_augment.rand_augment(image, seeds[2], 2, 9, 0.5), tf.float32)
    return tf_augment.random_erasing(tf_augment.normalize(image, mean, std), seeds[3], 0.25)

  ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=0).repeat().enumerate()
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch, drop_remainder=True)
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  return ds.with_options(options).prefetch(1).as_numpy_iterator()


def timm_batches(files, size, batch):
  import types
  # torchvision's wheels load beside this torch build once the module that registers its compiled ops' meta
  # kernels is empty; its transforms, which timm's are built on, are then the real ones.
  sys.modules['torchvision._meta_registrations'] = types.ModuleType('torchvision._meta_registrations')
  import timm.data
  from PIL import Image
  transform = timm.data.create_transform(size, is_training=True, auto_augment='rand-m9-mstd0.5', use_prefetcher=True)
  rng = np.random.default_rng(0)
  while True:
    images = []
    for path in rng.choice(files, batch):
      with open(path, 'rb') as f:
        images.append(np.asarray(transform(Image.open(f).convert('RGB'))))
    yield np.stack(images)


def one_round(args) -> float:
  """Images per second of --one's path: a fresh stream, its first batch untimed, then --steps batches."""
  files = sorted(glob.glob(os.path.join(args.data_dir, 'train', '*', '*.jpg')))
  makers = {'zoo': lambda: zoo_batches(args.data_dir, args.image_size, args.batch_size),
            'tfdata': lambda: tfdata_batches(files, args.image_size, args.batch_size),
            'timm': lambda: timm_batches(files, args.image_size, args.batch_size)}
  stream = makers[args.one]()
  next(stream)
  t = time.perf_counter()
  for _ in range(args.steps):
    next(stream)
  return args.steps * args.batch_size / (time.perf_counter() - t)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data_dir', required=True)
  p.add_argument('--synthetic', type=int, default=0)
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--steps', type=int, default=4)
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--paths', default='zoo,tfdata,timm')
  p.add_argument('--one', help='(internal) measure one round of this path in this process')
  args = p.parse_args()
  if args.one:
    print(one_round(args))
    return
  if args.synthetic:
    from zoo.data import input_speed
    input_speed.synthetic_folder(args.data_dir, args.synthetic)
  # Each round of each path runs in a process of its own, one after the other: no path's prefetching threads run
  # while another is timed, and none is timed with batches it prepared before its clock started.
  paths = args.paths.split(',')
  rates = {name: [] for name in paths}
  flags = [f'--{k}={getattr(args, k)}' for k in ('data_dir', 'image_size', 'batch_size', 'steps')]
  for _ in range(args.rounds):
    for name in paths:
      out = subprocess.run([sys.executable, __file__, f'--one={name}', *flags], capture_output=True, text=True)
      if out.returncode:
        raise SystemExit(f'{name} failed:\n{out.stderr[-3000:]}')
      rates[name].append(float(out.stdout.split()[-1]))
  images = len(glob.glob(os.path.join(args.data_dir, 'train', '*', '*.jpg')))
  for name in paths:
    print(json.dumps({'path': name, 'images_per_sec': round(statistics.median(rates[name]), 1),
                      'images_per_sec_min': round(min(rates[name]), 1),
                      'images_per_sec_max': round(max(rates[name]), 1), 'threads': 1,
                      'image_size': args.image_size, 'batch_size': args.batch_size, 'images': images,
                      'steps': args.steps, 'rounds': args.rounds}), flush=True)


if __name__ == '__main__':
  main()
