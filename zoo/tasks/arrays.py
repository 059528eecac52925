"""Tasks whose data fit in host memory as numpy arrays: denoising, reconstruction, watermarking, autoencoding.

They share how arrays become batches. Every host holds all the training examples and takes its rows of each global
batch (`zoo/data/arrays.py`, on grain: a seeded shuffle and flips/rotations, exact on resuming). The held-out
examples are made once, the same on every host, and split row by row (host p takes rows p, p + hosts, ...), so the
evaluation does not depend on the number of hosts; each host batches its share to what its devices need and pads
the last batch, which the 'mask' marks.
"""
import abc
import functools

import jax

from zoo.data import arrays, faces
from zoo.errors import UserError
from zoo.tasks.base import Task


class ArrayTask(Task):
  """A `Task` whose subclass supplies two arrays' worth of data: `load_examples()` and `load_eval(image_size)`."""
  EXAMPLES = 'images'  # what one training example is, for the error when there are fewer than one batch
  # False where the held-out data exist at the training size only: evaluation at another `image_size` is then
  # refused with an error instead of running at the training size.
  EVAL_AT_OTHER_SIZES = True

  def __init__(self, config):
    super().__init__(config)
    self._eval_arrays = {}

  @abc.abstractmethod
  def load_examples(self):
    """Every host's training examples [N, ...] (uint8 images, or float32 for data that is not 8-bit)."""

  @abc.abstractmethod
  def load_eval(self, image_size: int | None) -> dict:
    """{name: [M, ...]}: all the held-out examples at side `image_size` (None: the config's), with whatever is drawn
    for them (noise, messages) drawn from `config.seed`."""

  @functools.cached_property
  def examples(self):
    """The training examples, read on first use."""
    return self.load_examples()

  def eval_arrays(self, image_size: int | None = None) -> dict:
    """`load_eval(image_size)`, made once per size."""
    size = self.config.input.get('image_size')
    if not self.EVAL_AT_OTHER_SIZES and image_size not in (None, size):
      raise UserError(f'the {self.config.task} task evaluates at its input.image_size={size} only, not at '
                      f'image_size={image_size}: drop --image_size')
    if image_size not in self._eval_arrays:
      self._eval_arrays[image_size] = self.load_eval(image_size)
    return self._eval_arrays[image_size]

  @property
  def steps_per_epoch(self) -> int:
    return len(self.examples) // self.config.batch_size

  def check_data(self, training: bool = True):
    if training:
      arrays.check_array_fits(self.examples, self.config.batch_size, self.EXAMPLES)
    self.eval_arrays()

  def train_batches(self, start_step: int):
    """Endless batches {'image'} of this host's rows of the examples, flipped and rotated."""
    return arrays.array_train_batches(self.examples, self.config.batch_size, start_step, self.config.seed)

  def eval_batches(self, local_batch: int, image_size: int | None = None):
    held_out = self.eval_arrays(image_size)
    batch, steps = arrays.array_eval_batching(len(next(iter(held_out.values()))), local_batch)
    share = {k: v[jax.process_index()::jax.process_count()] for k, v in held_out.items()}
    return arrays.padded_batches(share, batch, steps)


class FaceTask(ArrayTask):
  """The face tasks (watermarking, autoencoding): lfw faces (zoo/data/faces.py), trained and held out at
  `input.image_size`, and evaluated at that size only."""
  EVAL_AT_OTHER_SIZES = False

  def __init__(self, config):
    super().__init__(config)
    faces.check_dataset(config)

  def load_examples(self):
    return faces.training_images(self.config)

  @functools.cached_property
  def eval_images(self):
    """The held-out faces, float32 [N, size, size, 3] in [0, 1], quantised to 8 bits."""
    return faces.held_out(self.config)
