"""The contract between a task and the code that runs it.

The trainer (zoo/trainer.py), the evaluation of checkpoints (zoo/evaluation.py) and the benchmark know no model and
no data set: they build a `Task` from the config (`zoo.tasks.get_task`) and use only what this class declares.
"""
import abc

import jax
from clu import metrics


def weight_decay_mask(params):
  """Weight decay applies to convolution and dense kernels only: never to norm parameters, biases, or VOLO's
  position embedding and class token (timm's rule for VOLO: no decay for 1-D tensors and {pos_embed, cls_token})."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def averages(*names: str) -> type[metrics.Collection]:
  """A clu metrics Collection of the (mask-weighted) mean of each named output over the examples it is given."""
  return metrics.Collection.create(**{name: metrics.Average.from_output(name) for name in names})


class Task(abc.ABC):
  """What to learn from which data: the model, its input, the loss and the metrics.

  Building a task checks its config (a bad value is a `zoo.errors.UserError`) and reads no data, so that building
  one is cheap wherever only the model and the loss are needed (benchmark.py). `check_data` reads and checks the
  data; the trainer and the evaluation call it before they compile anything, so bad data is one error line too.

  Every method runs on the host, except `train_loss` and `eval_outputs`, which the trainer traces into one
  per-device step: they see one device's share of a batch and must be pure functions of their arguments.
  """

  def __init__(self, config):
    self.config = config  # the run's whole config (ml_collections.ConfigDict); the trainer reads it too

  @property
  @abc.abstractmethod
  def TrainMetrics(self):  # noqa: N802  (a class, named as one)
    """A clu `metrics.Collection` class, gathered every step from 'loss', 'grad_norm' and the metric inputs that
    `train_loss` returns."""

  @property
  @abc.abstractmethod
  def EvalMetrics(self):  # noqa: N802
    """A clu `metrics.Collection` class, gathered from the outputs of `eval_outputs` (whose 'mask' weights them)."""

  @property
  @abc.abstractmethod
  def model(self):
    """The flax module the trainer initialises with `model.init(rng, init_inputs(), train=False)`; its variables are
    'params' and, optionally, 'batch_stats' (BatchNorm statistics, spectral norm's vectors), which are what the
    checkpoints hold. Cross-replica BatchNorm reduces over the axis named 'batch'."""

  @property
  @abc.abstractmethod
  def steps_per_epoch(self) -> int:
    """Global training steps in one pass over the training data (for epoch-based schedules); may read the data."""

  @abc.abstractmethod
  def check_data(self, training: bool = True) -> None:
    """Reads and checks the data this run will use (splits exist, images decode, one batch fits) and raises a
    `UserError` naming the fix; with `training=False` (evaluating a checkpoint) the held-out data only. Called
    before anything compiles; the other methods may assume it passed."""

  @abc.abstractmethod
  def init_inputs(self):
    """A batch of one example, as `model.init` takes it (an array, or a dict for a model of several inputs)."""

  @abc.abstractmethod
  def train_batches(self, start_step: int):
    """An endless iterator of this host's numpy batches (its rows of each global batch of `config.batch_size`),
    from global step `start_step` on: the batches a straight run would have seen from there, so resuming is exact.
    If it has a `close` method, the trainer calls it when the run ends."""

  @abc.abstractmethod
  def eval_batches(self, local_batch: int, image_size: int | None = None):
    """An iterable of this host's numpy batches of at most `local_batch` examples that covers the held-out data once,
    every host running the same number of batches; each batch has 'mask' (1 on real rows, 0 on padding).
    `image_size` evaluates at another side than the config's; a task that cannot raises a `UserError` when called,
    not when iterated."""

  @abc.abstractmethod
  def train_loss(self, params, batch_stats, batch, rng):
    """(mean loss over the device's batch, (new batch_stats, metric inputs for `TrainMetrics`)), differentiable in
    `params`. `rng` is this step's and this device's key."""

  @abc.abstractmethod
  def eval_outputs(self, params, batch_stats, batch) -> dict:
    """The inputs of `EvalMetrics`, per example, with the batch's 'mask'."""

  # weight_decay_mask(params): a tree of bools over `params`, True where the optimiser decays the weight.
  weight_decay_mask = staticmethod(weight_decay_mask)
