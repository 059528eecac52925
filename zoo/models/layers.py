"""Small building blocks shared by the zoo's model families."""
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

# He initialisation over the fan-out, as the ResNet papers (and timm) initialise convolutions.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def same_padding(kernel_size: int) -> list[tuple[int, int]]:
  """Symmetric padding k // 2 on both sides (TF1's `fixed_padding` and PyTorch's `padding=k//2` agree for odd k)."""
  return [(kernel_size // 2, kernel_size // 2)] * 2


class StochasticDepth(nn.Module):
  """Drops the whole residual branch per example with probability `rate` and rescales the survivors.

  Huang et al. 2016, as TF1 ResNet-RS `drop_connect`. Uses the 'dropout' rng; identity when not training.
  """
  rate: float

  @nn.compact
  def __call__(self, x, train: bool = False):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


def avg_pool_2x2_ceil(x):
  """2x2 stride-2 average pool with ceil mode and padding excluded from the mean (PyTorch's
  `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`), so odd feature maps keep their last row/column."""
  h, w = x.shape[1:3]
  ph, pw = h % 2, w % 2
  summed = nn.pool(jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0))), 0.0, jax.lax.add, (2, 2), (2, 2), 'VALID')
  counts = np.full(((h + ph) // 2, (w + pw) // 2), 4.0, np.float32)
  if ph:
    counts[-1, :] /= 2
  if pw:
    counts[:, -1] /= 2
  return summed / jnp.asarray(counts, x.dtype)[None, :, :, None]


def as_dtype(dtype):
  """Accepts 'bfloat16' / jnp.bfloat16 alike, so configs can carry dtypes as strings."""
  return jnp.dtype(dtype)
