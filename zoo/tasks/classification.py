"""Image classification: softmax cross-entropy with label smoothing, top-1 / top-5 accuracy."""
import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics

import zoo
from zoo.data import pipeline
from zoo.errors import UserError


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


def weight_decay_mask(params):
  """L2 regularisation applies to convolution and dense kernels only, never to BatchNorm parameters or biases."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


class ClassificationTask:
  """Supervised classification of a TFDS dataset (or an image folder) with a registered zoo classifier."""
  TrainMetrics = TrainMetrics
  EvalMetrics = EvalMetrics

  def __init__(self, config):
    self.config = config
    self.builder = pipeline.get_builder(config.dataset, config.get('data_dir'))
    pipeline.split_size(self.builder, config.train_split)
    pipeline.split_size(self.builder, config.eval_split)
    kwargs = dict(config.model_kwargs)
    classes = pipeline.num_classes(self.builder)
    if kwargs.setdefault('num_classes', classes) != classes:
      raise UserError(f'model_kwargs.num_classes={kwargs["num_classes"]} but dataset {config.dataset!r} has '
                       f'{classes} classes')
    # Cross-replica BatchNorm: statistics of the global batch, as if it ran on one device.
    self.model = zoo.create_model(config.model, bn_axis_name='batch', **kwargs)
    self.steps_per_epoch = pipeline.split_size(self.builder, config.train_split) // config.batch_size

  def init_inputs(self, image_size=None):
    size = image_size or self.config.input.image_size
    return jnp.zeros((1, size, size, self.config.input.channels), jnp.float32)

  def train_batches(self, local_batch, start_step):
    ds = pipeline.train_dataset(self.builder, self.config, local_batch, self.config.seed, start_step)
    return ds.as_numpy_iterator()

  def eval_batches(self, local_batch, image_size=None):
    return pipeline.eval_batches(self.builder, self.config, self.config.eval_split, local_batch, image_size)

  def num_eval_steps(self, local_batch):
    return pipeline.eval_steps(self.builder, self.config.eval_split, local_batch)

  def train_loss(self, params, batch_stats, batch, rng):
    """Mean smoothed cross-entropy of the local batch; returns (loss, (new_batch_stats, metric inputs))."""
    logits, updates = self.model.apply({'params': params, 'batch_stats': batch_stats}, batch['image'], train=True,
                                       rngs={'dropout': rng}, mutable=['batch_stats'])
    targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], logits.shape[-1]), self.config.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, (updates['batch_stats'], {'logits': logits, 'labels': batch['label']})

  def eval_outputs(self, params, batch_stats, batch):
    logits = self.model.apply({'params': params, 'batch_stats': batch_stats}, batch['image'], train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    return {'logits': logits, 'labels': batch['label'], 'loss': loss, 'mask': batch['mask']}

  weight_decay_mask = staticmethod(weight_decay_mask)
