"""Throughput of the classification training input on the host: `zoo-benchmark --mode=input`.

What is timed is what the trainer waits for: encoded records read, decoded, cropped, flipped, RandAugment-ed and
batched into uint8 numpy arrays by the pipeline's threads or worker processes (zoo/data/pipeline.py), with the
recipe of `--model` (its card's config: crop area, flip, RandAugment layers / magnitude / noise, erasing boxes).
`synthetic_folder` writes a folder of photograph-sized JPEGs for a data-free measurement.
"""
import os
import statistics
import time

import numpy as np

from zoo.errors import UserError


def synthetic_folder(root: str, count: int, classes: int = 10, seed: int = 0) -> str:
  """Writes `count` JPEGs (quality 90) of about 500x375, the typical ImageNet photograph, under
  ROOT/train/<class>/, and returns ROOT. The pixels are smooth random fields with fine noise on top, so the files
  compress like photographs (65-92 kB, 79 on average for 500 of them) rather than like flat colour or white
  noise. ROOT must not exist or be empty: nothing of the user's is overwritten."""
  import cv2
  if os.path.exists(root) and os.listdir(root):
    raise UserError(f'--synthetic writes a new image folder, but {root} exists and is not empty: pass an empty '
                    'or new --data_dir')
  rng = np.random.default_rng(seed)
  for i in range(count):
    h, w = (375, 500) if i % 4 else (500, 375)  # a quarter portrait
    h, w = h + int(rng.integers(-40, 41)), w + int(rng.integers(-40, 41))
    coarse = rng.uniform(0, 255, (h // 32 + 2, w // 32 + 2, 3)).astype(np.float32)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (h, w, 3))
    folder = os.path.join(root, 'train', f'class{i % classes}')
    os.makedirs(folder, exist_ok=True)
    cv2.imwrite(os.path.join(folder, f'{i:05d}.jpg'), np.clip(image, 0, 255).astype(np.uint8),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
  return root


def measure(config, steps: int, repeats: int) -> dict:
  """Images per second of the training input of `config` (its dataset, input and batch_size): `repeats` rounds of
  `steps` batches after two untimed ones; the median round's rate, with the slowest and fastest."""
  from zoo.data import pipeline, sources
  data = sources.open_dataset(config.dataset, config.data_dir)
  batches = pipeline.train_batches(data, config, config.seed)
  for _ in range(2):
    next(batches)
  rates = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps):
      batch = next(batches)
    rates.append(steps * len(batch['image']) / (time.perf_counter() - t))
  batches.close()  # its worker processes and their shared memory
  workers = config.input.workers or config.input.threads or os.cpu_count()
  rate = statistics.median(rates)
  return {'mode': 'input', 'dataset': config.dataset, 'image_size': config.input.image_size,
          'batch_size': config.batch_size, 'workers': config.input.workers, 'threads': config.input.threads,
          'images_per_sec': round(rate, 1), 'images_per_sec_min': round(min(rates), 1),
          'images_per_sec_max': round(max(rates), 1), 'images_per_sec_per_worker': round(rate / workers, 1),
          'randaugment': [config.input.randaugment_layers, config.input.randaugment_magnitude,
                          config.input.randaugment_magnitude_std], 'random_erasing': config.input.random_erasing,
          'steps': steps, 'repeats': repeats}
