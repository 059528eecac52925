"""Input pipeline: deterministic and resumable order, image folders, eval padding."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tests.helpers import tiny_config
from zoo.data import pipeline
from zoo.tasks.classification import ClassificationTask


def _take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


@pytest.mark.slow
def test_resumed_stream_equals_uninterrupted(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=16)
  c.input.randaugment_layers = 2  # stateless augmentation included
  c.input.randaugment_magnitude = 9
  builder = pipeline.get_builder(c.dataset, c.data_dir)
  straight = _take(pipeline.train_dataset(builder, c, seed=3), 300)  # crosses the epoch (250 batches)
  resumed = _take(pipeline.train_dataset(builder, c, seed=3, start_step=240), 60)
  for a, b in zip(straight[240:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  other = _take(pipeline.train_dataset(builder, c, seed=4), 1)
  assert not np.array_equal(other[0]['label'], straight[0]['label'])


@pytest.mark.slow
def test_each_epoch_holds_every_example_once_in_a_new_order(tfds_dir):
  """Uncropped, a training image names its example: each of two epochs holds the 4,000 images of the split once
  each, in another order than the other epoch and than another seed's first."""
  c = tiny_config(tfds_dir, batch_size=40)
  c.input.area_range = (1.0, 1.0)  # the whole image
  builder = pipeline.get_builder(c.dataset, c.data_dir)
  split = sorted(e['image'].tobytes() for e in tfds.as_numpy(builder.as_dataset(c.train_split)))

  def two_epochs(seed):
    images = np.concatenate([b['image'] for b in _take(pipeline.train_dataset(builder, c, seed=seed), 200)])
    pixels = np.round(images * np.float32(c.input.std) + np.float32(c.input.mean)).astype(np.uint8)
    return [[image.tobytes() for image in epoch] for epoch in pixels.reshape(2, 4000, 28, 28, 1)]

  first, second = two_epochs(3)
  assert sorted(first) == split and sorted(second) == split
  for other in (second, two_epochs(4)[0]):
    assert sum(a == b for a, b in zip(first, other)) < 40  # at most 1% in the same place


def test_train_batches_are_normalised(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=64)
  batch = _take(pipeline.train_dataset(pipeline.get_builder(c.dataset, c.data_dir), c, seed=0), 1)[0]
  assert batch['image'].shape == (64, 28, 28, 1) and batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32
  assert abs(batch['image'].mean()) < 0.5 and 0.5 < batch['image'].std() < 1.5


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


def test_image_folder_trains_and_evaluates_with_padding(image_folder):
  c = tiny_config(image_folder, dataset='image_folder', train_split='train', eval_split='test', batch_size=8)
  c.input.channels = 3
  c.input.image_size = 32
  c.input.mean = (127.5,) * 3
  c.input.std = (64.0,) * 3
  builder = pipeline.get_builder(c.dataset, c.data_dir)
  assert pipeline.num_classes(builder) == 2
  batch = _take(pipeline.train_dataset(builder, c, seed=0), 1)[0]
  assert batch['image'].shape == (8, 32, 32, 3)
  # Red images have a larger first channel than blue ones, after any crop.
  red = builder.info.features['label'].str2int('red')
  mean_r = batch['image'][..., 0].mean(axis=(1, 2)) - batch['image'][..., 2].mean(axis=(1, 2))
  assert np.all((mean_r > 0) == (batch['label'] == red))
  evals = list(pipeline.eval_batches(builder, c, 'test', 4))
  assert len(evals) == 3 and [b['mask'].sum() for b in evals] == [4, 4, 2]


def test_too_small_split_fails_clearly(image_folder):
  c = tiny_config(image_folder, dataset='image_folder', train_split='test', eval_split='test', batch_size=64)
  with pytest.raises(pipeline.DatasetError, match='fewer than one batch'):
    pipeline.train_dataset(pipeline.get_builder(c.dataset, c.data_dir), c, seed=0)


def test_unknown_split(tfds_dir):
  c = tiny_config(tfds_dir)
  with pytest.raises(pipeline.DatasetError, match=r"no split 'validation'; splits: \['test', 'train'\]"):
    pipeline.split_size(pipeline.get_builder(c.dataset, c.data_dir), 'validation')


def _break(image_folder):
  """Two unreadable files among the red training images: bytes that are no image, and a JPEG cut in half."""
  red = f'{image_folder}/train/red'
  with open(f'{red}/garbage.jpg', 'wb') as f:
    f.write(b'this is not an image')
  whole = open(f'{red}/0.jpg', 'rb').read()
  with open(f'{red}/truncated.jpg', 'wb') as f:
    f.write(whole[:len(whole) // 2])
  return sorted([f'{red}/garbage.jpg', f'{red}/truncated.jpg'])


def folder_config(image_folder, **overrides):
  c = tiny_config(image_folder, **{'dataset': 'image_folder', 'train_split': 'train', 'eval_split': 'test',
                                   'batch_size': 8, **overrides})
  c.input.channels, c.input.image_size, c.input.mean, c.input.std = 3, 32, (127.5,) * 3, (64.0,) * 3
  return c


def test_unreadable_images_are_skipped_with_a_warning_and_counted(image_folder, caplog):
  broken = _break(image_folder)
  c = folder_config(image_folder)
  task = ClassificationTask(c)
  task.check_data()  # scans the folder before anything compiles
  assert [path for path, _ in pipeline.unreadable_images(task.builder, 'train')] == broken
  assert '2 of 26 images of split \'train\' cannot be decoded and are skipped' in caplog.text
  assert pipeline.readable_size(task.builder, 'train') == 24
  # Two epochs of the 24 readable images decode without an error; each epoch holds every one of them once.
  batches = _take(pipeline.train_dataset(task.builder, c, seed=0), 6)
  labels = np.concatenate([b['label'] for b in batches[:3]])
  assert np.bincount(labels).tolist() == [12, 12]


def test_unreadable_images_are_fatal_on_request(image_folder):
  broken = _break(image_folder)
  task = ClassificationTask(folder_config(image_folder, **{'input.corrupt_images': 'error'}))
  assert 'builder' not in vars(task)  # building the task opened no data set
  with pytest.raises(pipeline.DatasetError, match=f'2 images of split .train. cannot be decoded, e.g. {broken[0]}'):
    task.check_data()


def test_a_split_smaller_than_one_batch_fails_before_compiling(image_folder):
  with pytest.raises(pipeline.DatasetError, match=r"split 'train' has 24 readable examples, fewer than one batch "
                                                  r'\(32\)'):
    ClassificationTask(folder_config(image_folder, batch_size=32)).check_data()
