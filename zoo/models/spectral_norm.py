"""Spectral normalisation of a layer's weight (Miyato et al. 2018) and of the convolution itself (Ryu et al. 2019).

`SpectralNorm(layer, mode=...)` wraps any linear layer of the zoo (nn.Conv, nn.ConvTranspose, nn.Dense) and divides
its kernel by an estimate sigma of a spectral norm, then multiplies it by `target`, so the layer (without its bias) is
`target`-Lipschitz:

- `mode='real'` (RealSN): sigma is the norm of the layer *as an operator on images* of the size it was initialised
  with. Power iteration runs on that operator and its exact adjoint (jax.linear_transpose of the convolution):
  v = A^T u / |A^T u|, u = A v / |A v|, sigma = <u, A v>. This is what bounds the Lipschitz constant of a
  convolutional network, and so what makes plug-and-play solvers provably converge.
- `mode='standard'`: sigma is the norm of the kernel reshaped to a (k*k*c_in, c_out) matrix (flax.linen.SpectralNorm,
  torch's spectral_norm). For a k x k convolution the operator norm can be up to k times larger than that, so the
  layer is not target-Lipschitz (tests/test_spectral_norm.py shows such a kernel).
- `mode=None`: the layer unchanged; the wrapper only reports its kernel, so that every mode has the same variables.

One power iteration per training step (`update_stats=True`), as both papers do; the vectors u, v live in the
non-param collection `collection` ('batch_stats' by default, as flax.linen.SpectralNorm, so a trainer that keeps
BatchNorm statistics keeps them too) and get no gradient; sigma does get the kernel's gradient. With
`update_stats=False` (evaluation) the stored vectors give sigma, so evaluation is deterministic.

Every call sows the kernel the layer actually used in 'intermediates'/'kernel', which the Lipschitz certificate
(zoo/inverse/lipschitz.py) reads.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import UserError

MODES = (None, 'standard', 'real')
# The names of the power-iteration vectors in `collection`: the weights' EMA copies them (zoo/ema.py).
VECTORS = ('u', 'v')


def _normalise(x, eps: float):
  return x / (jnp.sqrt(jnp.sum(jnp.square(x))) + eps)


class SpectralNorm(nn.Module):
  """`layer` with its kernel scaled to spectral norm `target` (see the module docstring for the modes)."""
  layer: nn.Module
  mode: str | None = 'real'
  target: float = 1.0
  eps: float = 1e-12
  collection: str = 'batch_stats'

  def _operator(self, kernel, input_shape):
    """The linear map whose norm `mode` normalises: the bias-free layer on one input, or the reshaped kernel."""
    if self.mode == 'real':
      linear = self.layer.clone(parent=None, use_bias=False)
      return lambda v: linear.apply({'params': {'kernel': kernel}}, v), (1,) + tuple(input_shape[1:])
    matrix = kernel.reshape(-1, kernel.shape[-1])
    return lambda v: v @ matrix, (1, matrix.shape[0])

  def _sigma(self, kernel, input_shape, update_stats: bool):
    """Sigma of `kernel`; with `update_stats`, after one power iteration (whose vectors are constants)."""
    frozen = jax.lax.stop_gradient(kernel.astype(jnp.float32))
    op, v_shape = self._operator(frozen, input_shape)
    op_t = jax.linear_transpose(op, jax.ShapeDtypeStruct(v_shape, jnp.float32))

    def first_vectors():  # one power iteration from a random u, so that sigma = |A v| > 0 from the start
      u0 = jax.random.normal(self.make_rng('params'), jax.eval_shape(op, jnp.zeros(v_shape)).shape)
      v0 = _normalise(op_t(u0)[0], self.eps)
      return v0, _normalise(op(v0), self.eps)

    initial = first_vectors() if self.is_initializing() else (None, None)
    u_name, v_name = VECTORS
    v_var = self.variable(self.collection, v_name, lambda: initial[0])
    u_var = self.variable(self.collection, u_name, lambda: initial[1])
    u, v = u_var.value, v_var.value
    if update_stats and not self.is_initializing():
      v = _normalise(op_t(u)[0], self.eps)
      u = _normalise(op(v), self.eps)
      u_var.value, v_var.value = u, v
    op_grad, _ = self._operator(kernel.astype(jnp.float32), input_shape)
    return jnp.sum(u * op_grad(v))

  @nn.compact
  def __call__(self, x, *, update_stats: bool = False):
    if self.mode not in MODES:
      raise UserError(f'spectral_norm mode must be one of {MODES}, got {self.mode!r}')

    def scale(variables):  # map_variables hands over {'params': the layer's params}
      params = variables['params']
      if 'kernel' not in params:  # the first read, before the layer's init created its kernel
        return variables
      kernel = params['kernel']
      if self.mode is not None:
        kernel = kernel * (self.target / self._sigma(kernel, x.shape, update_stats)).astype(kernel.dtype)
      self.sow('intermediates', 'kernel', kernel)
      return {'params': {**params, 'kernel': kernel}}

    return nn.map_variables(lambda layer, inputs: layer(inputs), 'params', trans_in_fn=scale,
                            init=self.is_initializing(), mutable=True)(self.layer, x)
