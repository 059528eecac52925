"""Classification input (zoo/data/pipeline.py on grain, zoo/data/sources.py): one global stream whatever the hosts,
threads or workers, exact resume reading nothing before its step, each epoch a new order of the whole split, image
folders with undecodable files, and one error line for data that cannot be used."""
import glob
import itertools
import json
from unittest import mock

import jax
import numpy as np
import pytest
from PIL import Image

from tests.helpers import BLOCK_TENSORFLOW, CountingSource, run_cli, tiny_config
from zoo.data import pipeline, sources, transforms
from zoo.errors import DatasetError
from zoo.tasks.classification import ClassificationTask


def _take(it, n):
  return list(itertools.islice(it, n))


def mnist(tfds_dir):
  return sources.open_dataset('mnist5k', tfds_dir)


class CountingData:
  """A dataset whose sources record the index of every record read."""

  def __init__(self, data):
    self.data, self.read = data, []

  def size(self, split):
    return self.data.size(split)

  def source(self, split):
    return CountingSource(self.data.source(split), self.read)


def on_host(hosts, host):
  return mock.patch.multiple(jax, process_count=mock.Mock(return_value=hosts),
                             process_index=mock.Mock(return_value=host))


@pytest.mark.slow
def test_resumed_stream_equals_uninterrupted(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=16)
  c.input.randaugment_layers, c.input.randaugment_magnitude, c.input.random_erasing = 2, 9, 0.5
  data = mnist(tfds_dir)
  straight = _take(pipeline.train_batches(data, c, seed=3), 300)  # crosses the epoch (250 batches)
  resumed = _take(pipeline.train_batches(data, c, seed=3, start_step=240), 60)
  for a, b in zip(straight[240:], resumed):
    for key in ('image', 'label', 'erase'):
      np.testing.assert_array_equal(a[key], b[key])
  assert 0 < sum(b['erase'][:, 2].astype(bool).sum() for b in straight) < 300 * 16
  other = _take(pipeline.train_batches(data, c, seed=4), 1)
  assert not np.array_equal(other[0]['label'], straight[0]['label'])


def test_resuming_at_step_k_reads_only_the_records_of_step_k(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=16, **{'input.cache': False})
  data = CountingData(mnist(tfds_dir))
  batch = pipeline.train_dataset(data, c, seed=3)[700]  # in the third epoch
  assert len(data.read) == 16 and batch['image'].shape == (16, 28, 28, 1)


def test_four_hosts_read_their_quarter_and_together_make_the_one_host_batch(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=32, **{'input.cache': False})
  c.input.randaugment_layers, c.input.threads = 2, 2
  one = _take(pipeline.train_batches(mnist(tfds_dir), c, seed=1), 3)
  parts = []
  for p in range(4):
    data = CountingData(mnist(tfds_dir))
    with on_host(4, p):
      parts.append(_take(pipeline.train_batches(data, c, seed=1), 3))
    # Its 8 rows of each of the 3 batches taken, and of the at most 4 batches its 2 threads prepared ahead.
    assert len(data.read) <= 8 * (3 + 4), len(data.read)
  for step in range(3):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(np.concatenate([parts[p][step][key] for p in range(4)]), one[step][key])


def test_the_cached_split_gives_the_same_batches_from_one_read(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=16, **{'input.cache': False})
  streamed = pipeline.train_dataset(mnist(tfds_dir), c, seed=2)
  c.input.cache = True
  data = CountingData(mnist(tfds_dir))
  cached = pipeline.train_dataset(data, c, seed=2)
  assert len(data.read) == 4000  # the whole split, once (through the source's one-call __getitems__ or not)
  for step in (0, 250, 777):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(cached[step][key], streamed[step][key])
  assert len(data.read) == 4000


@pytest.mark.slow
def test_threads_and_worker_processes_give_the_same_batches(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=16)
  c.input.randaugment_layers = 2
  c.input.threads = 1
  one_thread = _take(pipeline.train_batches(mnist(tfds_dir), c, seed=5, start_step=7), 4)
  c.input.workers = 2
  workers = _take(pipeline.train_batches(mnist(tfds_dir), c, seed=5, start_step=7), 4)
  for a, b in zip(one_thread, workers):
    np.testing.assert_array_equal(a['image'], b['image'])


@pytest.mark.slow
def test_each_epoch_holds_every_example_once_in_a_new_order(tfds_dir):
  """Uncropped, a training image names its example: each of two epochs holds the 4,000 images of the split once
  each, in another order than the other epoch and than another seed's first."""
  c = tiny_config(tfds_dir, batch_size=40)
  c.input.area_range = (1.0, 1.0)  # the whole image
  data = mnist(tfds_dir)
  source = sources.open_dataset('mnist5k', tfds_dir)._builder.as_data_source(split='train')
  split = sorted(source[i]['image'].tobytes() for i in range(len(source)))

  def two_epochs(seed):
    images = np.concatenate([b['image'] for b in _take(pipeline.train_batches(data, c, seed=seed), 200)])
    return [[image.tobytes() for image in epoch] for epoch in images.reshape(2, 4000, 28, 28, 1)]

  first, second = two_epochs(3)
  assert sorted(first) == split and sorted(second) == split
  for other in (second, two_epochs(4)[0]):
    assert sum(a == b for a, b in zip(first, other)) < 40  # at most 1% in the same place


def test_train_batches_are_uint8_and_the_task_normalises_them(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=64)
  task = ClassificationTask(c)
  batch = next(task.train_batches(0))
  assert batch['image'].shape == (64, 28, 28, 1) and batch['image'].dtype == np.uint8
  assert batch['label'].dtype == np.int32
  images = np.asarray(task.images(batch))
  assert images.dtype == np.float32 and abs(images.mean()) < 0.5 and 0.5 < images.std() < 1.5
  np.testing.assert_allclose(images, (batch['image'] - np.float32(c.input.mean)) / np.float32(c.input.std),
                             rtol=1e-6)


def test_erasing_fills_the_box_with_noise_after_normalising(tfds_dir):
  c = tiny_config(tfds_dir)
  task = ClassificationTask(c)
  batch = {'image': np.full((2, 28, 28, 1), 100, np.uint8), 'erase': np.array([[3, 4, 10, 5], [0, 0, 0, 0]])}
  images = np.array(task.images(batch, jax.random.key(0)))
  plain = (100 - c.input.mean[0]) / c.input.std[0]
  box = images[0, 3:13, 4:9]
  assert np.all(box != np.float32(plain)) and abs(box.mean()) < 0.5 and 0.6 < box.std() < 1.4
  images[0, 3:13, 4:9] = plain
  np.testing.assert_allclose(images, plain, rtol=1e-6)  # nothing else changed, the second image not at all


def test_eval_hosts_read_contiguous_slices_that_cover_the_split(tfds_dir):
  c = tiny_config(tfds_dir)
  one = list(pipeline.eval_batches(mnist(tfds_dir), c, 'test', 96))
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in one])
  parts = []
  for p in range(3):
    data = CountingData(mnist(tfds_dir))
    with on_host(3, p):
      batches = list(pipeline.eval_batches(data, c, 'test', 96))
    assert len(batches) == 4  # ceil(334 / 96) on every host
    assert sorted(data.read) == list(range(p * 1000 // 3, (p + 1) * 1000 // 3))
    parts.append(np.concatenate([b['label'][b['mask'] > 0] for b in batches]))
  np.testing.assert_array_equal(np.concatenate(parts), labels)


@pytest.fixture
def image_folder(tmp_path):
  """ROOT/<split>/<class>/<image>: 2 classes, PNG and JPEG, odd sizes."""
  rng = np.random.default_rng(0)
  for split, n in (('train', 12), ('test', 5)):
    for label, colour in (('red', (200, 30, 30)), ('blue', (30, 30, 200))):
      d = tmp_path / split / label
      d.mkdir(parents=True)
      for i in range(n):
        h, w = rng.integers(30, 60, size=2)
        pixels = np.clip(np.array(colour) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(d / f'{i}.{"png" if i % 2 else "jpg"}')
  return str(tmp_path)


def folder_config(image_folder, **overrides):
  c = tiny_config(image_folder, **{'dataset': 'image_folder', 'train_split': 'train', 'eval_split': 'test',
                                   'batch_size': 8, **overrides})
  c.input.channels, c.input.image_size, c.input.mean, c.input.std = 3, 32, (127.5,) * 3, (64.0,) * 3
  return c


def test_image_folder_trains_and_evaluates_with_padding(image_folder):
  c = folder_config(image_folder)
  data = sources.open_dataset(c.dataset, c.data_dir)
  assert data.num_classes == 2 and data.classes == ['blue', 'red']
  batch = next(pipeline.train_batches(data, c, seed=0))
  assert batch['image'].shape == (8, 32, 32, 3)
  # Red images have a larger first channel than blue ones, after any crop: RGB order, whatever OpenCV decodes.
  red_minus_blue = batch['image'][..., 0].mean(axis=(1, 2)) - batch['image'][..., 2].mean(axis=(1, 2))
  np.testing.assert_array_equal(red_minus_blue > 0, batch['label'] == 1)
  evals = list(pipeline.eval_batches(data, c, 'test', 4))
  assert len(evals) == 3 and [b['mask'].sum() for b in evals] == [4, 4, 2]


def test_too_small_split_fails_clearly(image_folder):
  c = folder_config(image_folder, train_split='test', batch_size=64)
  with pytest.raises(DatasetError, match='fewer than one batch'):
    pipeline.train_batches(sources.open_dataset(c.dataset, c.data_dir), c, seed=0)


def test_unknown_split(tfds_dir):
  with pytest.raises(DatasetError, match=r"no split 'validation'; splits: \['test', 'train'\]"):
    mnist(tfds_dir).size('validation')


def test_a_folder_without_images_fails_clearly(tmp_path):
  (tmp_path / 'train' / 'cat').mkdir(parents=True)
  (tmp_path / 'train' / 'cat' / 'notes.txt').write_text('no image here')
  with pytest.raises(DatasetError, match=r"split 'train' has no images \(.jpg, .jpeg, .png"):
    ClassificationTask(folder_config(str(tmp_path), eval_split='train')).check_data()


def test_a_tfrecord_only_dataset_names_the_command_that_converts_it_and_that_command_works(tmp_path):
  """TFDS's default format cannot be read at random: the error names `zoo-data convert`, which makes the same folder
  readable (the same examples in the same order) without TensorFlow, and keeps the TFRecord files."""
  pytest.importorskip('tensorflow')  # preparing as TFRecord needs TensorFlow
  import tensorflow_datasets as tfds
  from zoo.data import mnist5k  # noqa: F401
  tfds.builder('mnist5k', data_dir=str(tmp_path), file_format='tfrecord').download_and_prepare()
  with pytest.raises(DatasetError, match=r"'mnist5k' in .*mnist5k/1.1.0 is stored as tfrecord only, which cannot be "
                                         rf'read at random: convert it once with `zoo-data convert mnist5k '
                                         rf'--data_dir={tmp_path}`'):
    sources.open_dataset('mnist5k', str(tmp_path))
  convert = BLOCK_TENSORFLOW + "sys.argv[0] = 'zoo-data'; from zoo.commands.data import run; run()"
  rc, out, err = run_cli('-c', convert, 'convert', 'mnist5k', f'--data_dir={tmp_path}', timeout=120)
  assert rc == 0, err
  assert json.loads(out.splitlines()[-1])['shards_written'] == 2
  data = sources.open_dataset('mnist5k', str(tmp_path))
  reference = tfds.as_numpy(tfds.builder('mnist5k', data_dir=str(tmp_path)).as_dataset(split='test'))
  source = data.source('test')
  for i, example in enumerate(itertools.islice(reference, 50)):
    assert example['label'] == source[i]['label']
    np.testing.assert_array_equal(example['image'], transforms.decode(source[i]['image'], 1))
  assert data.size('train') == 4000 and len(glob.glob(f'{tmp_path}/mnist5k/1.1.0/*.tfrecord-*')) == 2


def _break(image_folder):
  """Two unreadable files among the red training images: bytes that are no image, and a JPEG cut in half."""
  red = f'{image_folder}/train/red'
  with open(f'{red}/garbage.jpg', 'wb') as f:
    f.write(b'this is not an image')
  whole = open(f'{red}/0.jpg', 'rb').read()
  with open(f'{red}/truncated.jpg', 'wb') as f:
    f.write(whole[:len(whole) // 2])
  return sorted([f'{red}/garbage.jpg', f'{red}/truncated.jpg'])


def test_unreadable_images_are_skipped_with_a_warning_and_counted(image_folder, caplog):
  broken = _break(image_folder)
  c = folder_config(image_folder)
  task = ClassificationTask(c)
  task.check_data()  # scans the folder before anything compiles
  assert [path for path, _ in task.data.unreadable('train')] == broken
  assert '2 of 26 images of split \'train\' cannot be decoded and are skipped' in caplog.text
  assert task.data.size('train') == 24
  # Two epochs of the 24 readable images decode without an error; each epoch holds every one of them once.
  batches = _take(pipeline.train_batches(task.data, c, seed=0), 6)
  labels = np.concatenate([b['label'] for b in batches[:3]])
  assert np.bincount(labels).tolist() == [12, 12]


def test_an_empty_file_is_an_unreadable_image(image_folder):
  open(f'{image_folder}/train/blue/empty.jpg', 'wb').close()  # OpenCV's decoder asserts on no bytes
  task = ClassificationTask(folder_config(image_folder))
  task.check_data()
  assert task.data.unreadable('train') == [(f'{image_folder}/train/blue/empty.jpg', 'not a decodable image (0 bytes)')]


def test_unreadable_images_are_fatal_on_request(image_folder):
  broken = _break(image_folder)
  task = ClassificationTask(folder_config(image_folder, **{'input.corrupt_images': 'error'}))
  assert 'data' not in vars(task)  # building the task opened no data set
  with pytest.raises(DatasetError, match=f'2 images of split .train. cannot be decoded, e.g. {broken[0]}'):
    task.check_data()


def test_a_record_that_fails_later_stops_the_input_with_its_error(image_folder):
  """An image that breaks after the check (a disk, a copy in progress): the batch that holds it raises the decode
  error, in the threads' iterator as in worker processes', instead of hanging the run."""
  c = folder_config(image_folder, batch_size=24)
  task = ClassificationTask(c)
  task.check_data()
  for path, _ in task.data.files('train'):
    with open(path, 'wb') as f:
      f.write(b'broken after the check')
  for workers in (0, 1):
    c.input.workers = workers
    with pytest.raises(Exception, match='cannot decode an image record of 22 bytes'):
      next(pipeline.train_batches(task.data, c, seed=0))


def test_a_split_smaller_than_one_batch_fails_before_compiling(image_folder):
  _break(image_folder)
  with pytest.raises(DatasetError, match=r"split 'train' has 24 readable examples, fewer than one batch "
                                         r'\(32\)'):
    ClassificationTask(folder_config(image_folder, batch_size=32)).check_data()
