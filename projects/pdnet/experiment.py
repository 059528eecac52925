"""PD-Net against the classical reconstructions: `python -m projects.pdnet.experiment [--flags]`.

Cheng et al., "Model Learning: Primal Dual Networks for Fast MR Imaging" (MICCAI 2019), unroll PDHG into a network
and relax its fixed updates into learned ones. This experiment puts the steps of that progression side by side on
the same held-out images and the same Cartesian masks at 4x and 8x:
1. zero-filled inverse FFT |A* y|;
2. TV-PDHG (zoo/inverse/tv.py), no learning;
3. PnP-ADMM (zoo/inverse/pnp.py) with the RealSN SimpleCNN denoiser of the plug-and-play project (sigma 15,
   projects/pnp), applied to the real and imaginary parts of the complex image (data_terms.ComplexCSMRI);
4. PD-Net `pdhg`: the same PDHG steps, unrolled 10 times, with learned step sizes and TV weight (30 parameters);
5. PD-Net `learned`: the fully learned primal and dual updates.
Both PD-Nets are trained by the zoo's trainer (configs/pdnet.py, reduced to fit a CPU: see `pdnet_config`); a
workdir that already holds the final checkpoint of the same config is reused, one of another config is an error.
Images, phases, masks and measurements come from the reconstruction task (zoo/tasks/reconstruction.py) with the
config's seed, so every method sees the same k-space. TV's weight and PnP's prox weight are the best of a small grid
on training crops (simulated with another seed), never on the test images. Output: results.json, table.md and
figure.png in --out (default: this folder, beside its README).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from projects import common
from projects.pnp import experiment as pnp_experiment
from zoo import cli
from zoo.cli import apply_overrides
from zoo.errors import UserError

RELAXATIONS = ('pdhg', 'learned')
METHODS = ('zero_filled', 'tv_pdhg', 'pnp_admm', 'pdnet_pdhg', 'pdnet_learned')
LABELS = {'zero_filled': 'zero-filled', 'tv_pdhg': 'TV-PDHG', 'pnp_admm': 'PnP-ADMM, RealSN',
          'pdnet_pdhg': 'PD-Net pdhg', 'pdnet_learned': 'PD-Net learned'}
TV_WEIGHTS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
PNP_ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TUNING_IMAGES = 6
TUNING_SEED_OFFSET = 1  # tuning crops draw their phase from config.seed + 1
DENOISER_SIGMA = 15
# Config keys a reused workdir must share with the experiment's config (trainer.train_unless_done).
MATCHED_KEYS = (('model_kwargs', 'relaxation'), ('kspace', 'mask'), ('kspace', 'accel'), ('kspace', 'mask_seed'),
                ('input', 'image_size'), ('num_train_steps',))


def pdnet_config(relaxation: str, accel: int, image_size: int, steps: int, overrides: dict | None = None):
  """configs/pdnet.py:cartesian-ACCEL with `relaxation`, trained for `steps` at `image_size`: the config's recipe
  (Adam 1e-3, cosine, batch 8) on smaller images and fewer steps than the paper's, so that a CPU trains it."""
  from configs import pdnet
  c = pdnet.get_config(f'cartesian-{accel}')
  c.model_kwargs.relaxation = relaxation
  c.input.image_size = image_size
  c.input.patch_stride = image_size // 2
  c.num_train_steps = steps
  c.eval_every_steps = c.checkpoint_every_steps = max(steps // 4, 1)
  return apply_overrides(c, overrides or {})


def trained_pdnet(config, workdir: str):
  """(model, parameters) of the final checkpoint in `workdir`, trained there first when it lacks one."""
  import zoo
  from zoo import checkpoint, trainer
  trainer.train_unless_done(config, workdir, MATCHED_KEYS)
  _, variables = checkpoint.load_variables(workdir, 'reconstruction')
  return zoo.create_model(config.model, **config.model_kwargs), variables['params']


def denoiser(workdir: str, data_dir: str | None, steps: int, overrides: dict):
  """The RealSN SimpleCNN (sigma 15) of `workdir` as a function of a complex image's parts [H, W, 2] -> [H, W, 2],
  each part mapped onto the range the denoiser knows (pnp.rescaled, as the plug-and-play project). Trained there first
  when it lacks the final step (projects/pnp: on the paper's BSD400 when `data_dir` is given, else on the offline
  photographs)."""
  from zoo.inverse import pnp, trained
  model, variables, config = pnp_experiment.trained_denoiser(workdir, 'real', DENOISER_SIGMA, steps, data_dir,
                                                             overrides)
  part = pnp.rescaled(trained.as_function(model, variables), scale=1 + DENOISER_SIGMA / 510)

  def denoise(x):
    return jnp.stack([part(x[..., 0]), part(x[..., 1])], axis=-1)
  return denoise, {'workdir': workdir, 'dataset': config['dataset']}


# Reconstructions: k-space channels [N, H, W, 2] and the mask [H, W] -> magnitudes [N, H, W].

def zero_filled(kspace, mask):
  from zoo.inverse import mri
  return np.abs(np.asarray(mri.adjoint(mri.from_channels(jnp.asarray(kspace)), mask)))


def tv_pdhg(kspace, mask, lam: float, iterations: int):
  from zoo.inverse import mri, tv
  x, _ = tv.pdhg_tv(mri.from_channels(jnp.asarray(kspace)), jnp.asarray(mask), lam=lam, iterations=iterations)
  return np.abs(np.asarray(x))


def pnp_admm(kspace, mask, denoise, alpha: float, iterations: int):
  """One run per image (the denoiser's rescaling is per image); returns the magnitudes and each run's
  |x_K - x_{K-1}| / |x_1 - x_0|."""
  from zoo.inverse import data_terms, mri, pnp
  out, ratios = [], []
  for k in np.asarray(kspace):
    term = data_terms.ComplexCSMRI(mask=jnp.asarray(mask, jnp.float32), y=mri.from_channels(jnp.asarray(k)))
    x, history = pnp.pnp_admm(denoise, term, term.initial(), alpha=alpha, iterations=iterations)
    out.append(np.abs(np.asarray(mri.from_channels(x))))
    residual = np.asarray(history['residual'])
    ratios.append(float(residual[-1] / residual[0]))
  return np.stack(out), ratios


def pdnet(kspace, mask, model, params):
  masks = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), kspace.shape[:3])
  return np.asarray(jax.jit(model.apply)({'params': params}, jnp.asarray(kspace), masks))[..., 0]


def scores(recon, target) -> dict:
  """Per-image PSNR / SSIM / NMSE of the reconstruction clipped to [0, 1], as the task's evaluation."""
  from zoo.metrics import nmse, psnr, ssim
  recon = jnp.clip(jnp.asarray(recon, jnp.float32), 0.0, 1.0)[..., None]
  return {name: np.asarray(f(recon, target)).tolist() for name, f in (('psnr', psnr), ('ssim', ssim), ('nmse', nmse))}


def best_of_grid(grid, reconstruct, kspace, target) -> tuple[float, dict]:
  """The grid value whose reconstructions have the best mean PSNR, and every value's mean PSNR."""
  means = {value: float(np.mean(scores(reconstruct(value), target)['psnr'])) for value in grid}
  return max(means, key=means.get), {str(k): v for k, v in means.items()}


def run(*, workdir: str, image_size: int, accels, train_steps: int, pnp_iterations: int, tv_iterations: int,
        denoiser_workdir: str, denoiser_steps: int, data_dir: str | None, overrides: dict):
  """Trains (or finds) the PD-Nets and runs every method on the test problems. Returns the results (scores,
  chosen parameters; JSON) and, per acceleration, the arrays the figure shows: 'mask', 'target', 'recons'."""
  from zoo.data import natural_images
  from zoo.tasks.reconstruction import ReconstructionTask
  denoise, denoiser_info = denoiser(denoiser_workdir, data_dir, denoiser_steps, overrides)
  results = {'image_size': image_size, 'train_steps': train_steps, 'pnp_iterations': pnp_iterations,
             'tv_iterations': tv_iterations, 'denoiser': denoiser_info, 'accels': {}}
  arrays = {}
  for accel in accels:
    configs = {r: pdnet_config(r, accel, image_size, train_steps, overrides) for r in RELAXATIONS}
    nets = {r: trained_pdnet(configs[r], os.path.join(workdir, f'pdnet-{r}-cartesian-{accel}')) for r in RELAXATIONS}
    task = ReconstructionTask(configs['learned'])
    mask = task.sampling_mask((image_size, image_size))
    kspace, target = task.eval_data(image_size)
    picks = np.linspace(0, len(task.examples) - 1, TUNING_IMAGES).round().astype(int)
    tune_kspace, tune_target = task.simulate(task.examples[picks][..., 0] / 255.0,
                                             configs['learned'].seed + TUNING_SEED_OFFSET)
    lam, tv_grid = best_of_grid(TV_WEIGHTS, lambda v: tv_pdhg(tune_kspace, mask, v, tv_iterations),
                                tune_kspace, tune_target)
    alpha, pnp_grid = best_of_grid(PNP_ALPHAS, lambda v: pnp_admm(tune_kspace, mask, denoise, v, pnp_iterations)[0],
                                   tune_kspace, tune_target)
    logging.info('%dx: TV weight %g, PnP prox weight %g (chosen on %d training crops)', accel, lam, alpha,
                 TUNING_IMAGES)
    pnp_recon, pnp_ratios = pnp_admm(kspace, mask, denoise, alpha, pnp_iterations)
    recons = {'zero_filled': zero_filled(kspace, mask), 'tv_pdhg': tv_pdhg(kspace, mask, lam, tv_iterations),
              'pnp_admm': pnp_recon,
              **{f'pdnet_{r}': pdnet(kspace, mask, *nets[r]) for r in RELAXATIONS}}
    results['accels'][str(accel)] = {
        'sampling_rate': float(mask.mean()), 'tv_weight': lam, 'tv_grid_psnr': tv_grid, 'pnp_alpha': alpha,
        'pnp_grid_psnr': pnp_grid, 'pnp_residual_ratio': pnp_ratios,
        'learned_parameters': {f'pdnet_{r}': int(sum(np.size(p) for p in jax.tree.leaves(nets[r][1])))
                               for r in RELAXATIONS},
        'scores': {m: scores(recons[m], target) for m in METHODS}}
    arrays[str(accel)] = {'mask': np.asarray(mask), 'target': target[..., 0], 'recons': recons}
    results['images'] = (list(natural_images.SKIMAGE_SPLITS[task.config.eval_split]) + ['phantom']
                         if task.config.dataset == 'skimage' else list(range(len(target))))
  return results, arrays


def table(results: dict) -> str:
  """Markdown: mean PSNR / SSIM / NMSE per method and acceleration, then PSNR per image."""
  accels = list(results['accels'])
  head = ['method', 'learned parameters'] + [f'{a}x {m}' for a in accels for m in ('PSNR', 'SSIM', 'NMSE')]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  first = results['accels'][accels[0]]
  for m in METHODS:
    params = first['learned_parameters'].get(m, 0)
    cells = [LABELS[m], f'{params:,}']
    for a in accels:
      s = results['accels'][a]['scores'][m]
      cells += [f'{np.mean(s["psnr"]):.2f}', f'{np.mean(s["ssim"]):.3f}', f'{np.mean(s["nmse"]):.4f}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  names = results['images']
  head = ['PSNR (dB)'] + [f'{a}x {n}' for a in accels for n in names]
  lines += ['', '| ' + ' | '.join(map(str, head)) + ' |', '|' + '---|' * len(head)]
  for m in METHODS:
    cells = [LABELS[m]] + [f'{p:.2f}' for a in accels for p in results['accels'][a]['scores'][m]['psnr']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot(results: dict, arrays: dict, path: str, image: int = -1) -> None:
  """For one test image (default the last, the phantom: the photographs' crops are small parts of a scene), per
  acceleration: the ground truth and each method's magnitude, then the mask and each method's absolute error."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  accels = list(results['accels'])
  fig, axes = plt.subplots(2 * len(accels), 1 + len(METHODS), figsize=(2.4 * (1 + len(METHODS)), 5.0 * len(accels)))
  for row, a in enumerate(accels):
    r, arr = results['accels'][a], arrays[a]
    target = arr['target'][image]
    top, bottom = axes[2 * row], axes[2 * row + 1]
    top[0].imshow(target, cmap='gray', vmin=0, vmax=1)
    top[0].set_title(f'ground truth ({results["images"][image]})', fontsize=9)
    bottom[0].imshow(np.fft.fftshift(arr['mask']), cmap='gray')
    bottom[0].set_title(f'{a}x Cartesian mask ({100 * r["sampling_rate"]:.1f}%)', fontsize=9)
    for col, m in enumerate(METHODS, start=1):
      recon = np.clip(arr['recons'][m][image], 0, 1)
      top[col].imshow(recon, cmap='gray', vmin=0, vmax=1)
      top[col].set_title(f'{LABELS[m]}\n{r["scores"][m]["psnr"][image]:.2f} dB', fontsize=9)
      bottom[col].imshow(np.abs(recon - target), cmap='magma', vmin=0, vmax=0.25)
      bottom[col].set_title(f'{a}x |error|', fontsize=9)
  for ax in axes.ravel():
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=60)
  plt.close(fig)


def define_flags():
  common.define_shared_flags("Optional: the PnP column's denoiser, when trained here, trains on its BSD400 (else on "
                             'the offline photographs).', 'workdirs/pdnet', 3000,
                             'PD-Net, at batch 8: WORKDIR/pdnet-RELAXATION-cartesian-ACCEL')
  flags.DEFINE_integer('image_size', 64, 'Side of the training crops and the test images.')
  flags.DEFINE_list('accels', ['4', '8'], 'Accelerations of the Cartesian masks.')
  flags.DEFINE_integer('iterations', 100, 'PnP-ADMM iterations.')
  flags.DEFINE_integer('tv_iterations', 200, 'TV-PDHG iterations.')
  flags.DEFINE_string('denoiser_workdir', 'workdirs/pnp/simplecnn-real-15', "The PnP column's RealSN denoiser "
                      '(sigma 15, the plug-and-play project\'s); trained there first when it lacks the final step.')
  flags.DEFINE_integer('denoiser_steps', 800, 'Training steps of that denoiser.')
  flags.DEFINE_string('out', common.project_dir(__file__), 'Where results.json, table.md and figure.png go.')


def main(argv):
  FLAGS = flags.FLAGS
  def experiment():
    try:
      accels = [int(a) for a in FLAGS.accels]
    except ValueError:
      raise UserError(f'--accels takes integers, e.g. 4,8; got {",".join(FLAGS.accels)}') from None
    results, arrays = run(
        workdir=FLAGS.workdir, image_size=FLAGS.image_size, accels=accels, train_steps=FLAGS.train_steps,
        pnp_iterations=FLAGS.iterations, tv_iterations=FLAGS.tv_iterations, denoiser_workdir=FLAGS.denoiser_workdir,
        denoiser_steps=FLAGS.denoiser_steps, data_dir=common.pnp_data_dir(FLAGS.data_dir, required=False),
        overrides=common.overrides(FLAGS.config_overrides))
    return results, table(results), lambda path: plot(results, arrays, path)
  common.conclude(argv, experiment, FLAGS.out, 'figure.png')


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
