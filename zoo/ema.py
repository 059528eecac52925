"""The exponential moving average of the weights that evaluation uses (TF's ExponentialMovingAverage, which the
ResNet-RS recipe keeps), and which weights a checkpoint offers for inference.

The EMA is optional: a run with `ema_decay=0` keeps none, so its train state and checkpoints hold the weights once.
It averages the params and the BatchNorm statistics. RealSN's power-iteration vectors u, v
(zoo/models/spectral_norm.py), which live beside the BatchNorm statistics in 'batch_stats', are copied from the
trained state instead: they belong to the trained kernels, and an average of unit vectors is no unit vector
(sigma = <u, A v> on it would understate the norm, so the normalised layer would not be target-Lipschitz).
"""
import jax
import jax.numpy as jnp
import optax

from zoo.models.spectral_norm import VECTORS


def decay_at(decay: float, step):
  """TF's ExponentialMovingAverage with num_updates: the decay ramps up as min(decay, (1 + t) / (10 + t))."""
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def start(params, batch_stats) -> tuple:
  """(ema_params, ema_batch_stats) equal to the weights, in buffers of their own (donation must not see one array
  twice)."""
  return _copied((params, batch_stats))


@jax.jit
def _copied(tree):
  """Every leaf copied, in one compiled function: leaf by leaf, each shape compiled a copy of its own (82 of them,
  1.4 s, at the start of the tests' ResNet-RS runs)."""
  return jax.tree.map(jnp.copy, tree)


def update(ema_params, ema_batch_stats, params, batch_stats, decay) -> tuple:
  """(ema_params, ema_batch_stats) one step on: decay * average + (1 - decay) * new, but the power-iteration vectors
  taken as they are in `batch_stats`."""
  averaged = optax.incremental_update(batch_stats, ema_batch_stats, 1.0 - decay)
  stats = jax.tree_util.tree_map_with_path(lambda path, mean, new: new if path[-1].key in VECTORS else mean,
                                           averaged, batch_stats)
  return optax.incremental_update(params, ema_params, 1.0 - decay), stats


def inference_variables(state: dict, use_ema: bool = True) -> tuple[dict, bool]:
  """({'params', 'batch_stats'} to evaluate, export or start from, whether they are the EMA) of a train state as a
  state dict (`flax.serialization.to_state_dict`, or a checkpoint as restored): the EMA weights where the state has
  them and `use_ema`, else the trained ones. Converted weights have no EMA; checkpoints of `ema_decay=0` runs written
  before the EMA became optional hold one equal to the trained weights."""
  ema = use_ema and state.get('ema_params') is not None
  prefix = 'ema_' if ema else ''
  return {'params': state[prefix + 'params'], 'batch_stats': state.get(prefix + 'batch_stats') or {}}, ema
