"""Lipschitz certificate of a trained denoiser: `python -m zoo.inverse.lipschitz --workdir DIR`.

Plug-and-play converges when the residual network N = I - D is eps-Lipschitz (Ryu et al., ICML 2019):
PnP-ADMM for eps < 1, PnP-FBS for eps < 2 mu / (L - mu), i.e. for data terms of condition number L / mu < 1 + 2 / eps.

Reported, for the checkpoint's weights in evaluation mode:
- every convolution's operator norm on images of --image_size (default: the training patch), by power iteration on
  the convolution and its adjoint until it settles - the kernel the layer really uses, after spectral normalisation;
- every BatchNorm's largest channel gain |gamma| / sqrt(var + eps) (BN is a per-channel affine map in evaluation);
- their product, an upper bound of Lip(N), since the registered denoisers chain 'SAME' stride-1 convolutions, BN and
  1-Lipschitz ReLUs (up to the precision of the layers' power iterations, which approach each norm from below);
- a power-iteration estimate of ||J_N(x)|| at noisy held-out images x (centre crops), a lower bound of Lip(N);
and whether each condition holds: certified by the bound, or only at the tested images.
The whole report is printed as one JSON line at the end.
"""
import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from zoo import cli
from zoo.errors import UserError


def _iterate(apply, apply_t, v0, iterations: int):
  """Largest singular value of the linear map `apply` (with its transpose `apply_t`) by `iterations` power
  iterations from v0; traced inside the caller's jit."""
  def body(v, _):
    w = apply_t(apply(v))
    return w / jnp.linalg.norm(w), None
  v, _ = jax.lax.scan(body, v0 / jnp.linalg.norm(v0), None, length=iterations)
  return jnp.linalg.norm(apply(v))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _conv_norm(kernel, image_size: int, iterations: int):
  # Compiled once per kernel shape: a DnCNN's 15 inner layers share one program.
  shape = (1, image_size, image_size, kernel.shape[2])

  def conv(v):
    return jax.lax.conv_general_dilated(v, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  conv_t = jax.linear_transpose(conv, jax.ShapeDtypeStruct(shape, kernel.dtype))
  return _iterate(conv, lambda u: conv_t(u)[0], jax.random.normal(jax.random.key(0), shape, kernel.dtype),
                  iterations)


def conv_norm(kernel, image_size: int, iterations: int) -> float:
  """Operator norm of the bias-free 'SAME' stride-1 convolution with `kernel` on image_size^2 images."""
  return float(_conv_norm(jnp.asarray(kernel, jnp.float32), image_size, iterations))


def jacobian_norms(model, variables, images, iterations: int) -> list[float]:
  """||J_N(x)||_2 of the residual network N at each image x of `images` [K, H, W], by power iteration on J^T J
  (jvp, vjp), the K images in one compiled, vmapped program."""
  @jax.jit
  def run(images, variables):
    def one(x):
      def residual(z):
        return model.apply(variables, z[None, :, :, None], train=False, method=model.residual)[0, :, :, 0]
      return _iterate(lambda v: jax.jvp(residual, (x,), (v,))[1], lambda u: jax.vjp(residual, x)[1](u)[0],
                      jax.random.normal(jax.random.key(0), x.shape), iterations)
    return jax.vmap(one)(images)
  return [float(n) for n in run(jnp.asarray(images, jnp.float32), variables)]


def layer_report(model, variables, image_size: int, iterations: int) -> list[dict]:
  """Per layer, in network order: convolutions' operator norms and BatchNorms' largest gains."""
  probe = jnp.zeros((1, image_size, image_size, 1))
  _, state = model.apply(variables, probe, train=False, mutable=['intermediates'])
  kernels = {name: leaves['kernel'][0] for name, leaves in state['intermediates'].items()}
  rows = []
  for i in range(model.depth):
    name = f'conv{i}'
    rows.append({'layer': name, 'kind': 'conv', 'shape': list(kernels[name].shape),
                 'norm': conv_norm(kernels[name], image_size, iterations)})
    bn = variables['params'].get(f'bn{i}')
    if bn is not None:
      stats = variables['batch_stats'][f'bn{i}']
      gain = np.abs(np.asarray(bn['scale'])) / np.sqrt(np.asarray(stats['var']) + 1e-5)
      rows.append({'layer': f'bn{i}', 'kind': 'batchnorm', 'norm': float(gain.max())})
  return rows


def certify(model, variables, config: dict, image_size: int, iterations: int, num_images: int, jacobian_size: int,
            jacobian_iterations: int) -> dict:
  from zoo.data import natural_images
  from zoo.inverse import trained
  layers = layer_report(model, variables, image_size, iterations)
  bound = float(np.prod([row['norm'] for row in layers]))
  images = natural_images.load(config['dataset'], config['eval_split'], config.get('data_dir'))[:num_images]
  rng = np.random.default_rng(0)
  by_shape = {}  # noisy centre crops, grouped by shape (an image smaller than jacobian_size gives a smaller crop)
  for image in images:
    clean = natural_images.center_crop(image, min(jacobian_size, *image.shape))
    by_shape.setdefault(clean.shape, []).append(clean + trained.noise_sigma(config) * rng.standard_normal(clean.shape))
  estimates = [n for crops in by_shape.values()
               for n in jacobian_norms(model, variables, np.stack(crops), jacobian_iterations)]
  estimate = max(estimates)
  return {
      'model': config['model'], 'spectral_norm': config['model_kwargs'].get('spectral_norm'),
      'target_lipschitz': config['model_kwargs'].get('lipschitz'), 'image_size': image_size, 'layers': layers,
      'lipschitz_bound': bound, 'jacobian_norm_estimate': estimate,
      'admm': 'certified' if bound < 1 else ('holds at the tested images' if estimate < 1 else 'fails'),
      # FBS converges for data terms with L / mu below this (eps < 2 mu / (L - mu)); inf when eps = 0.
      'fbs_max_condition_number_certified': 1 + 2 / bound,
      'fbs_max_condition_number_estimate': 1 + 2 / estimate,
  }


def print_report(report: dict) -> None:
  print(f"{report['model']} spectral_norm={report['spectral_norm']} lipschitz target={report['target_lipschitz']}")
  print(f"{'layer':<8}{'kind':<11}{'norm':>10}   (operators on {report['image_size']}x{report['image_size']})")
  for row in report['layers']:
    print(f"{row['layer']:<8}{row['kind']:<11}{row['norm']:>10.4f}")
  print(f"Lip(I - D) <= {report['lipschitz_bound']:.4f} (product of the layers)")
  print(f"Lip(I - D) >= {report['jacobian_norm_estimate']:.4f} (Jacobian norm at noisy held-out images)")
  print(f"PnP-ADMM (eps < 1): {report['admm']}")
  print(f"PnP-FBS (eps < 2 mu / (L - mu)): certified for L/mu < {report['fbs_max_condition_number_certified']:.3f}, "
        f"at the tested images for L/mu < {report['fbs_max_condition_number_estimate']:.3f}")
  print(json.dumps(report))


def define_flags():
  """The CLI's flags, defined only when it runs: the module is also a library (projects/pnp uses it)."""
  flags.DEFINE_string('workdir', None, 'Workdir of a trained denoiser (configs/denoiser.py).')
  flags.DEFINE_integer('step', -1, 'Checkpoint step; -1 takes the latest.')
  flags.DEFINE_integer('image_size', 0, 'Image size of the layer operator norms; 0 = the training patch size.')
  flags.DEFINE_integer('iterations', 500, 'Power iterations per layer norm.')
  flags.DEFINE_integer('num_images', 3, 'Held-out images at which the Jacobian norm of N is estimated.')
  flags.DEFINE_integer('jacobian_size', 64, 'Centre crop of those images.')
  flags.DEFINE_integer('jacobian_iterations', 100, 'Power iterations per Jacobian norm.')
  flags.DEFINE_integer('power_iterations', 0, 'First advance the spectral-norm vectors by this many iterations on '
                       'the trained weights (zoo/inverse/trained.py), as projects/pnp does; 0: as trained.')


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  from zoo.inverse import trained
  try:
    if not FLAGS.workdir:
      raise UserError('--workdir is required: the workdir of a trained denoiser')
    model, variables, config = trained.load(FLAGS.workdir, None if FLAGS.step < 0 else FLAGS.step,
                                           power_iterations=FLAGS.power_iterations)
    size = FLAGS.image_size or config['input']['patch_size']
    report = certify(model, variables, config, size, FLAGS.iterations, FLAGS.num_images, FLAGS.jacobian_size,
                     FLAGS.jacobian_iterations)
  except UserError as e:
    sys.exit(f'error: {e}')
  print_report(report)


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
