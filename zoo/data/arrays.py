"""Input of the tasks whose data fit in host memory as numpy arrays (denoising, reconstruction, watermarking,
autoencoding), with grain: no TensorFlow.

Training: every host holds all the examples. The stream is a seeded shuffle of them, reshuffled each epoch, each
example turned by one of the eight rotations / flips drawn from a generator seeded by its position in the stream.
It is cut into sub-batches of `batch_size / hosts` rows; global batch k is sub-batches k * hosts ... k * hosts +
hosts - 1, and host p takes the p-th. A global batch is therefore the same on any number of hosts, and resuming at
step k indexes the stream at step k (grain's datasets are random access): nothing before it is read again.

Evaluation: `array_eval_batching` and `padded_batches` cover a host's share of the held-out arrays in whole,
zero-padded, masked batches.
"""
import os

import grain
import jax
import numpy as np

from zoo.errors import DatasetError


def check_array_fits(examples: np.ndarray, batch_size: int, what: str) -> None:
  if len(examples) < batch_size:
    raise DatasetError(f'{len(examples)} training {what}, fewer than one batch ({batch_size}): lower '
                       '--config.batch_size or add data')


def rotate_or_flip(image: np.ndarray, rng: np.random.Generator) -> dict:
  """One of the eight symmetries of the square, uniformly: a rotation by k quarter turns, then a left-right flip
  with probability 1/2."""
  image = np.rot90(image, int(rng.integers(4)))
  if rng.integers(2):
    image = image[:, ::-1]
  return {'image': np.ascontiguousarray(image)}


def array_train_batches(examples: np.ndarray, batch_size: int, start_step: int, seed: int):
  """Endless numpy batches {'image'} of an in-memory array of all training examples [N, H, W, C]: this host's rows
  of global batches `start_step`, `start_step + 1`, ... of `batch_size` (module docstring). Two threads prepare the
  next batches while the current one trains."""
  hosts = jax.process_count()
  ds = grain.MapDataset.source(examples).shuffle(seed=seed).repeat(None).random_map(rotate_or_flip, seed=seed)
  ds = ds.batch(batch_size // hosts).slice(slice(jax.process_index(), None, hosts))[start_step:]
  threads = min(2, os.cpu_count() or 1)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)))


def array_eval_batching(num_examples: int, local_batch: int) -> tuple[int, int]:
  """(batch, steps) that cover this host's share of `num_examples` held-out examples: the trainer's batch, or fewer,
  just enough in whole steps of the local devices (a few large images need not be padded to a training batch).
  Every host runs the same number of steps."""
  devices = jax.local_device_count()
  per_host = -(-num_examples // jax.process_count())
  batch = min(local_batch, -(-per_host // devices) * devices)
  return batch, -(-per_host // batch)


def padded_batches(arrays: dict, batch: int, steps: int):
  """Yields `steps` batches of `batch` rows of every array in `arrays`, zero-padded at the end, with 'mask' 1 on real
  rows and 0 on padding."""
  def pad(array):
    return np.concatenate([array, np.zeros((batch - len(array),) + array.shape[1:], array.dtype)])

  for start in range(0, steps * batch, batch):
    rows = {k: v[start:start + batch] for k, v in arrays.items()}
    real = np.ones(len(next(iter(rows.values()))), np.float32)
    yield {**{k: pad(v) for k, v in rows.items()}, 'mask': pad(real)}
