"""The in-memory tasks' training input (zoo/data/arrays.py, on grain): a global batch is the same on any number of
hosts, each host reads only the records of its own rows, resuming reads nothing before its step, and each example
is turned by one of the eight symmetries of the square, drawn uniformly."""
import collections
from unittest import mock

import jax
import numpy as np
import pytest

from tests.helpers import CountingSource
from zoo.data import arrays

# An epoch of 16 steps: a resumed read of steps 3-5 prefetches up to 4 batches more (zoo/data/arrays.py), which must
# stay within the first epoch for `read` to show what resuming reads (with 8 steps an epoch, the prefetch sometimes
# reached the next epoch's records, those of steps 0-2 among them).
N, BATCH, SEED = 128, 8, 3


def examples():
  """N 4x4 single-channel images, image i all i (its id, whatever symmetry turns it) but for a 255 in one corner."""
  images = np.repeat(np.arange(N, dtype=np.uint8), 16).reshape(N, 4, 4, 1)
  images[:, 0, 0] = 255
  return images


def host_batches(source, hosts: int, host: int, start: int, count: int):
  with mock.patch.object(jax, 'process_count', return_value=hosts), \
       mock.patch.object(jax, 'process_index', return_value=host):
    it = arrays.array_train_batches(source, BATCH, start, SEED)
    return [next(it)['image'] for _ in range(count)]


def canonical(image):
  """The id of an example whatever symmetry turned it."""
  return int(image.min())


def test_four_hosts_read_their_quarter_and_together_make_the_one_host_batches():
  one = host_batches(examples(), 1, 0, 0, 4)
  sources = [CountingSource(examples()) for _ in range(4)]
  parts = [host_batches(sources[p], 4, p, 0, 4) for p in range(4)]
  for step in range(4):
    np.testing.assert_array_equal(np.concatenate([parts[p][step] for p in range(4)]), one[step])
  ids_of_rows = {canonical(image) for batch in one for image in batch}
  for p, source in enumerate(sources):
    # Its 2 rows of each of the 4 batches taken, and of the batches its reading threads prepared ahead (at most 4
    # more): never another host's row.
    assert len(source.read) <= 2 * (4 + 4), len(source.read)
    assert {canonical(parts[p][s][r]) for s in range(4) for r in range(2)} <= ids_of_rows
  read = [set(s.read) for s in sources]
  assert all(not (read[p] & read[q]) for p in range(4) for q in range(p))  # within the first epoch, disjoint


def test_resuming_at_a_step_reads_no_record_of_the_steps_before():
  straight = host_batches(examples(), 1, 0, 0, 6)
  source = CountingSource(examples())
  resumed = host_batches(source, 1, 0, 3, 3)
  for a, b in zip(resumed, straight[3:]):
    np.testing.assert_array_equal(a, b)
  before = {canonical(image) for batch in straight[:3] for image in batch}
  assert source.read and not (set(source.read) & before)


def test_epochs_hold_every_example_once_in_new_orders():
  batches = host_batches(examples(), 1, 0, 0, 2 * N // BATCH)
  ids = [canonical(image) for batch in batches for image in batch]
  assert sorted(ids[:N]) == sorted(ids[N:]) == list(range(N)) and ids[:N] != ids[N:]


def test_the_eight_symmetries_are_drawn_uniformly():
  image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
  symmetries = [np.rot90(image, k) for k in range(4)]
  symmetries += [s[:, ::-1] for s in symmetries]
  rng = np.random.default_rng(0)
  counts = collections.Counter()
  for _ in range(8000):
    out = arrays.rotate_or_flip(image, rng)['image']
    [which] = [i for i, s in enumerate(symmetries) if np.array_equal(out, s)]
    counts[which] += 1
    assert out.flags['C_CONTIGUOUS']
  # 1000 expected each; a binomial's standard deviation is about 30.
  assert len(counts) == 8 and all(880 < c < 1120 for c in counts.values()), counts


def test_an_error_while_reading_ends_the_stream_with_that_error():
  """A record that fails to load fails the next batch with its own error, raised in the training loop, not a hang."""
  class Broken(CountingSource):
    def __getitem__(self, index):
      if index == 5:
        raise OSError('record 5 is unreadable')
      return super().__getitem__(index)

  it = arrays.array_train_batches(Broken(examples()), BATCH, 0, SEED)
  with pytest.raises(OSError, match='record 5 is unreadable'):
    for _ in range(N // BATCH):
      next(it)
