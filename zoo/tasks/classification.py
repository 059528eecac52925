"""Image classification: softmax cross-entropy with label smoothing, top-1 / top-5 accuracy.

A model whose training output is a dict (VOLO's token-labelling contract, see zoo/models/volo.py) trains with the
token-labelling loss instead; evaluation and metrics always use plain class logits.
"""
import functools

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics

import zoo
from zoo.errors import DatasetError, UserError
from zoo.tasks.base import Task


@flax.struct.dataclass
class Top5(metrics.Average):
  """Fraction of examples whose label is among the five highest logits."""

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_):
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    hit = jnp.any(top5 == labels[:, None], axis=-1).astype(jnp.float32)
    return super().from_model_output(values=hit, mask=mask)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  top1: metrics.Accuracy
  top5: Top5
  grad_norm: metrics.Average.from_output('grad_norm')


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  top1: metrics.Accuracy
  top5: Top5


AUX_WEIGHT = 0.5  # VOLO's dense_weight: loss = CE(class token) + 0.5 * CE(aux tokens)


def smoothed_cross_entropy(logits, labels, smoothing: float):
  """Cross-entropy against label-smoothed one-hot targets, per example; no [..., C] target is built (VOLO's aux
  logits hold one row per token). Equal to optax.softmax_cross_entropy with optax.smooth_labels targets."""
  log_p = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  return (1.0 - smoothing) * nll - smoothing * jnp.mean(log_p, axis=-1)


def token_labelling_loss(outputs: dict, labels, smoothing: float, token_labels=None):
  """Token labelling (Jiang et al. 2021) as VOLO trains: CE(cls) + AUX_WEIGHT * mean CE over the aux tokens.

  MixToken pasted a box of image B-1-i into image i, so the class target is mix_lambda * y[i] + (1 - mix_lambda) *
  y[B-1-i]. The model already swapped the box's aux tokens back, so every aux token of row i describes image i: its
  target is `token_labels[i]` ([B, h, w] ints) when the data has dense targets, else image i's label.
  """
  lam = outputs['mix_lambda']
  cls = lam * smoothed_cross_entropy(outputs['logits'], labels, smoothing) + (
      1.0 - lam) * smoothed_cross_entropy(outputs['logits'], labels[::-1], smoothing)
  aux = outputs['aux_logits']
  if token_labels is None:
    token_labels = jnp.broadcast_to(labels[:, None, None], aux.shape[:3])
  elif token_labels.shape != aux.shape[:3]:
    raise UserError(f'token_labels of shape {token_labels.shape} do not fit the model\'s token grid: its aux '
                    f'logits have shape {aux.shape}')
  return cls.mean() + AUX_WEIGHT * smoothed_cross_entropy(aux, token_labels, smoothing).mean()


def random_erasing(images, boxes, rng):
  """Fills each image's box (int [B, 4]: top, left, height, width; height 0: none) with N(0, 1) noise per pixel and
  channel: timm's RandomErasing, mode 'pixel', on normalised images. The boxes come from the input
  (zoo/data/transforms.py, `sample_erase_box`); the noise from this step's key."""
  rows = jnp.arange(images.shape[1])[None, :, None]
  cols = jnp.arange(images.shape[2])[None, None, :]
  top, left, h, w = (boxes[:, i, None, None] for i in range(4))
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
  return jnp.where(inside[..., None], jax.random.normal(rng, images.shape, images.dtype), images)


class ClassificationTask(Task):
  """Supervised classification of a TFDS dataset prepared as ArrayRecord, or of an image folder, with a registered
  zoo classifier.

  The data set is opened when first needed; `check_data` decodes all of an image folder once (zoo/data/sources.py).
  Batches hold uint8 images; `images` normalises them inside the step. `num_classes` sets the classifier's outputs
  where no data set is behind the task (benchmark.py's synthetic batches: the same model, loss and train step as
  training); by default they are the data set's classes.
  """
  TrainMetrics = TrainMetrics
  EvalMetrics = EvalMetrics

  def __init__(self, config, num_classes: int | None = None):
    super().__init__(config)
    self._num_classes = num_classes

  @functools.cached_property
  def data(self):
    from zoo.data import sources
    return sources.open_dataset(self.config.dataset, self.config.get('data_dir'), self.config.get('class_index'))

  @functools.cached_property
  def num_classes(self) -> int:
    if self._num_classes is not None:
      return self._num_classes
    classes = self.data.num_classes
    if self.config.model_kwargs.get('num_classes', classes) != classes:
      raise UserError(f'model_kwargs.num_classes={self.config.model_kwargs.num_classes} but dataset '
                      f'{self.config.dataset!r} has {classes} classes')
    return classes

  @functools.cached_property
  def model(self):
    # Cross-replica BatchNorm: statistics of the global batch, as if it ran on one device.
    return zoo.create_model(self.config.model, bn_axis_name='batch',
                            **{**self.config.model_kwargs, 'num_classes': self.num_classes})

  @functools.cached_property
  def steps_per_epoch(self) -> int:
    return self.data.size(self.config.train_split) // self.config.batch_size

  @functools.cached_property
  def token_grid(self):
    """The (h, w) grid of the model's aux tokens, onto which the pipeline maps the dense targets; None without
    `input.token_labels`."""
    if not self.config.input.token_labels:
      return None
    grid = getattr(self.model, 'grid', None)
    if grid is None:
      raise UserError(f'input.token_labels=True needs a token-labelling model (volo_d*); {self.config.model} '
                       'has no token grid')
    if 'token_labels' not in self.data.features:
      raise DatasetError(f'input.token_labels=True but dataset {self.config.dataset!r} has no '
                         f'\'token_labels\' feature (features: {self.data.features})')
    return tuple(grid)

  def check_data(self, training: bool = True):
    from zoo.data import pipeline
    c = self.config
    for split in (c.train_split, c.eval_split) if training else (c.eval_split,):
      self.data.size(split)
      self.data.check_images(split, c.input.corrupt_images)
    if training:
      pipeline.check_split_fits(self.data, c.train_split, c.batch_size)
    # Reading them runs their checks: model_kwargs.num_classes against the data set's, token labels in the data.
    self.num_classes, self.token_grid  # noqa: B018

  def init_inputs(self):
    size = self.config.input.image_size
    return jnp.zeros((1, size, size, self.config.input.channels), jnp.float32)

  def images(self, batch, rng=None):
    """The batch's uint8 images normalised with the config's mean and std (0..255 units), float32; with `rng`
    (given when the batch holds 'erase' boxes), randomly erased."""
    inp = self.config.input
    mean, std = jnp.asarray(inp.mean, jnp.float32), jnp.asarray(inp.std, jnp.float32)
    images = (batch['image'].astype(jnp.float32) - mean) / std
    if rng is not None:
      images = random_erasing(images, batch['erase'], rng)
    return images

  def train_batches(self, start_step):
    from zoo.data import pipeline
    return pipeline.train_batches(self.data, self.config, self.config.seed, start_step, token_grid=self.token_grid)

  def eval_batches(self, local_batch, image_size=None):
    from zoo.data import pipeline
    return pipeline.eval_batches(self.data, self.config, self.config.eval_split, local_batch, image_size)

  def train_loss(self, params, batch_stats, batch, rng):
    """Mean loss of the local batch: smoothed cross-entropy, or the token-labelling loss for a model whose training
    output is a dict. Returns (loss, (new_batch_stats, metric inputs)); top-1/top-5 compare the class logits with
    the images' own labels, also in MixToken batches."""
    erase_rng = None
    if 'erase' in batch:
      erase_rng, rng = jax.random.split(rng)
    outputs, updates = self.model.apply({'params': params, 'batch_stats': batch_stats},
                                        self.images(batch, erase_rng), train=True, rngs={'dropout': rng},
                                        mutable=['batch_stats'])
    if isinstance(outputs, dict):
      loss = token_labelling_loss(outputs, batch['label'], self.config.label_smoothing, batch.get('token_labels'))
      logits = outputs['logits']
    else:
      logits = outputs
      targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], logits.shape[-1]), self.config.label_smoothing)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, (updates['batch_stats'], {'logits': logits, 'labels': batch['label']})

  def eval_outputs(self, params, batch_stats, batch):
    logits = self.model.apply({'params': params, 'batch_stats': batch_stats}, self.images(batch), train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    return {'logits': logits, 'labels': batch['label'], 'loss': loss, 'mask': batch['mask']}
