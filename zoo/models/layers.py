"""Small building blocks shared by the zoo's model families."""
import functools

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


NHWC = ('NHWC', 'HWIO', 'NHWC')


def _conv_nhwc(x, w, padding, precision):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _stride1_conv(x, w, padding, precision):
  return _conv_nhwc(x, w, padding, precision)


def _stride1_conv_fwd(x, w, padding, precision):
  return _conv_nhwc(x, w, padding, precision), (x, w)


def _stride1_conv_bwd(padding, precision, residuals, g):
  x, w = residuals
  # Input gradient: the flipped kernel with in/out swapped, padded so that the map keeps its size.
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  back_pad = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w.shape[:2], padding)]
  dx = _conv_nhwc(g, flipped, back_pad, precision)
  # Kernel gradient: batch and channels swapped, so the spatial extent of g plays the kernel.
  dw = _conv_nhwc(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), padding, precision)
  return dx, dw.transpose(1, 2, 0, 3)


_stride1_conv.defvjp(_stride1_conv_fwd, _stride1_conv_bwd)


def loop_friendly_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                       dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` whose gradients are plain NHWC x HWIO convolutions, for use inside `lax.scan`.

  XLA:CPU rewrites the transposed convolutions of autodiff into its fast form in straight-line code but not inside
  a while loop, where they fall back to a generic kernel 10-50x slower (the gradient of four 3x3 convolutions on
  8x20x20x128 took 3.5 s scanned against 0.07 s unrolled, and RS-420's scanned training step 81 s against 5 s).
  Only stride-1, undilated, ungrouped NHWC convolutions (all those of a non-first block) take the custom gradient.
  """
  dilations = tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())
  if (lhs.ndim != 4 or any(s != 1 for s in window_strides) or any(d != 1 for d in dilations)
      or feature_group_count != 1 or dimension_numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)):
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _stride1_conv(lhs, rhs, tuple(tuple(p) for p in padding), precision)
