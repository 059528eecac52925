"""Where the classification input's time goes, per image, on one thread: the stages timed apart on an image folder.

  python tools/profile_input.py --data_dir=DIR [--images=200] [--image_size=224]

DIR is an image folder (ROOT/train/<class>/*.jpg, e.g. `zoo-benchmark --mode=input --synthetic=500
--data_dir=DIR`). Prints one JSON line of milliseconds per image: the header read, OpenCV's decode at full, 1/2 and
1/8 scale, Pillow's decode (what timm's loader does), one crop and resize, RandAugment (2 layers, magnitude 9, noise
0.5), the whole training transform of the volo_d1 recipe, and a batch of the grain stream (shuffle, seeding and
stacking included). Run from the repository root.
"""
import argparse
import glob
import io
import json
import os
import time

import numpy as np
from PIL import Image

from zoo import cli
from zoo.data import pipeline, randaugment, sources, transforms


def per_image(fn, count: int) -> float:
  start = time.perf_counter()
  for i in range(count):
    fn(i)
  return round((time.perf_counter() - start) / count * 1e3, 3)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data_dir', required=True)
  p.add_argument('--images', type=int, default=200)
  p.add_argument('--image_size', type=int, default=224)
  args = p.parse_args()
  files = sorted(glob.glob(os.path.join(args.data_dir, 'train', '*', '*.jpg')))[:args.images]
  data = [open(f, 'rb').read() for f in files]
  n, size, rng = len(data), args.image_size, np.random.default_rng(0)
  decoded = transforms.decode(data[0], 3)
  crop = transforms.crop_and_resize(decoded, (0, 0), (min(decoded.shape[:2]),) * 2, size)
  config = cli.config_module('configs/volo.py').get_config(f'd1-{size}')
  config.dataset, config.data_dir, config.train_split, config.batch_size = 'image_folder', args.data_dir, 'train', 64
  transform = pipeline.TrainTransform(config.input)
  stream = pipeline.train_dataset(sources.open_dataset('image_folder', args.data_dir), config, seed=0)
  print(json.dumps({
      'images': n, 'mean_kB': round(sum(map(len, data)) / n / 1e3, 1),
      'header_ms': per_image(lambda i: transforms.image_shape(data[i]), n),
      'opencv_decode_ms': per_image(lambda i: transforms.decode(data[i], 3), n),
      'opencv_decode_half_ms': per_image(lambda i: transforms.decode(data[i], 3, 2), n),
      'opencv_decode_eighth_ms': per_image(lambda i: transforms.decode(data[i], 3, 8), n),
      'pillow_decode_ms': per_image(lambda i: np.asarray(Image.open(io.BytesIO(data[i])).convert('RGB')), n),
      'crop_and_resize_ms': per_image(lambda i: transforms.crop_and_resize(decoded, (i % 7, i % 5), (300, 280), size),
                                      n),
      'randaugment_ms': per_image(lambda i: randaugment.rand_augment(crop, rng, 2, 9, 0.5), n),
      'train_transform_ms': per_image(lambda i: transform({'image': data[i], 'label': 0}, np.random.default_rng(i)),
                                      n),
      'grain_stream_ms': round(per_image(lambda i: stream[i], 4) / 64, 3),  # a batch of 64 per call
  }))


if __name__ == '__main__':
  main()
