"""The plug-and-play paper's experiments, reproduced: `python -m projects.pnp.experiment --data_dir=DIR`.

Ryu et al., "Plug-and-Play Methods Provably Converge with Properly Trained Denoisers" (ICML 2019), claim that
PnP-ADMM / PnP-FBS converge with a denoiser whose residual I - D is Lipschitz with a small enough constant, which
real spectral normalisation (RealSN) of every convolution enforces. This script:
1. trains SimpleCNN denoisers at sigma 15 and 40 without SN, with standard SN and with RealSN on the paper's BSD400
   patches (configs/denoiser.py; a workdir that already holds the final checkpoint is reused), and certifies each
   (zoo/inverse/lipschitz.py);
2. runs compressed-sensing MRI (Brain and Bust, the paper's random / radial / Cartesian masks at 30% and its k-space
   noise; sigma-15 denoisers) and Poisson denoising (the paper's demo image at peak 1; sigma-40 denoisers) with
   PnP-ADMM and PnP-FBS for 100 iterations, with the reference code's parameters (zoo/inverse/pnp.py);
3. writes results.json, table.md and residuals.png to --out (default: this folder, beside its README).
The paper's data (--data_dir or $ZOO_PNP_DATA) is described in projects/pnp/README.md.
"""
import os

import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from projects import common
from zoo import cli
from zoo.cli import apply_overrides

SPECTRAL_NORMS = ('none', 'standard', 'real')
LABELS = {'none': 'no SN', 'standard': 'standard SN', 'real': 'RealSN'}
MASKS = ('random', 'radial', 'cartesian')
# The reference scripts' parameters (zoo/inverse/pnp.py): our alpha is the prox weight, theirs is 1 / (2 alpha).
CSMRI = dict(sigma=15, admm_alpha=4.0, fbs_step=0.4)
POISSON = dict(sigma=40, admm_alpha=0.1, fbs_step=0.1)
# Spectral-norm vectors are first converged on the trained weights (zoo/inverse/trained.py); no-op without SN.
POWER_ITERATIONS = 1000
# A reused denoiser workdir must hold the same kind of denoiser (trainer.train_unless_done).
MATCHED_KEYS = (('model',), ('model_kwargs', 'spectral_norm'), ('noise', 'sigma'))


def denoiser_config(sn: str, sigma: int, steps: int, data_dir: str | None, overrides: dict):
  """configs/denoiser.py:simplecnn-SN-SIGMA for `steps`: on the paper's BSD400 (evaluated on Set12) when `data_dir`
  is given, else on the offline photographs."""
  from configs import denoiser
  c = denoiser.get_config(f'simplecnn-{sn}-{sigma}')
  if data_dir:
    c.dataset, c.data_dir, c.eval_split = 'pnp', data_dir, 'Set12'
  c.num_train_steps = steps
  c.eval_every_steps = c.checkpoint_every_steps = max(steps // 2, 1)
  return apply_overrides(c, overrides)


def trained_denoiser(workdir: str, sn: str, sigma: int, steps: int, data_dir: str | None, overrides: dict):
  """(model, variables, config) of the denoiser in `workdir`, trained there first (denoiser_config) when it lacks the
  final step; its spectral-norm vectors converged on the final weights. A workdir holding another network, spectral
  norm or noise level is refused."""
  from zoo import trainer
  from zoo.inverse import trained
  config = denoiser_config(sn, sigma, steps, data_dir, overrides)
  logging.info('denoiser %s in %s (trained on %s when missing)', config.model, workdir, config.dataset)
  trainer.train_unless_done(config, workdir, MATCHED_KEYS)
  return trained.load(workdir, power_iterations=POWER_ITERATIONS)


def geometric_rate(residuals) -> float:
  """Per-iteration factor of the residual over the last half of the run, from a log-linear fit: < 1 means the
  iterates converge geometrically."""
  r = np.asarray(residuals, np.float64)[len(residuals) // 2:]
  slope = np.polyfit(np.arange(len(r)), np.log(np.maximum(r, 1e-30)), 1)[0]
  return float(np.exp(slope))


def run(solver: str, denoiser, term, x0, params: dict, x_true, iterations: int) -> dict:
  """One solver's run: the last iterate's PSNR, PSNR and residual per iteration, their geometric rate."""
  from zoo.inverse import pnp
  if solver == 'admm':
    x, history = pnp.pnp_admm(denoiser, term, x0, alpha=params['admm_alpha'], iterations=iterations, x_true=x_true)
  else:
    x, history = pnp.pnp_fbs(denoiser, term, x0, step=params['fbs_step'], iterations=iterations, x_true=x_true)
  residual = np.asarray(history['residual'], np.float64)
  return {'psnr': float(np.asarray(history['psnr'])[-1]), 'psnr_history': np.asarray(history['psnr']).tolist(),
          'residual': residual.tolist(), 'rate': geometric_rate(residual),
          'residual_ratio': float(residual[-1] / residual[0]), 'finite': bool(np.all(np.isfinite(np.asarray(x))))}


def experiments(data_dir: str, workdir: str, train_steps: int, iterations: int, overrides: dict) -> dict:
  """Every denoiser (in WORKDIR/simplecnn-SN-SIGMA, trained for `train_steps` on the paper's BSD400 when missing),
  its certificate, and every solver run on the paper's problems in `data_dir`: the JSON of results.json."""
  from zoo.inverse import data_terms, lipschitz, paper_data, pnp, trained
  from zoo.metrics import psnr
  csmri = paper_data.load_csmri(data_dir)
  poisson = paper_data.load_demo(data_dir, 'poisson')
  results = {'denoisers': {}, 'csmri': [], 'poisson': []}
  for sigma, params in ((CSMRI['sigma'], CSMRI), (POISSON['sigma'], POISSON)):
    for sn in SPECTRAL_NORMS:
      model, variables, config = trained_denoiser(os.path.join(workdir, f'simplecnn-{sn}-{sigma}'), sn, sigma,
                                                  train_steps, data_dir, overrides)
      report = lipschitz.certify(model, variables, config, config['input']['patch_size'], 500, 3, 64, 100)
      results['denoisers'][f'{sn}-{sigma}'] = {
          'lipschitz_bound': report['lipschitz_bound'], 'jacobian_norm_estimate': report['jacobian_norm_estimate'],
          'layer_norms': [row['norm'] for row in report['layers']]}
      # One denoiser function per network: the solvers compile once for it and reuse it for every image and mask.
      denoise = pnp.rescaled(trained.as_function(model, variables), scale=1 + sigma / 510)
      if sigma == CSMRI['sigma']:
        for image_name, image in csmri['images'].items():
          for mask_name in MASKS:
            term = data_terms.CSMRI.simulate(jnp.asarray(image), csmri['masks'][mask_name],
                                             noise=csmri['kspace_noise'])
            x0 = term.initial()
            for solver in ('admm', 'fbs'):
              logging.info('CS-MRI %s %s %s %s', image_name, mask_name, sn, solver)
              results['csmri'].append({'image': image_name, 'mask': mask_name, 'sn': sn, 'solver': solver,
                                       'zero_filled_psnr': float(psnr(x0, image, axes=(-2, -1))),
                                       **run(solver, denoise, term, x0, params, jnp.asarray(image), iterations)})
      else:
        clean = jnp.asarray(poisson['clean'], jnp.float32) / poisson['maxval']
        term = data_terms.Poisson(y=jnp.asarray(poisson['noisy'], jnp.float32), peak=poisson['peak'])
        x0 = term.initial()
        fbs_denoise = pnp.rescaled(trained.as_function(model, variables), scale=1 + 20 / 510)
        for solver, d in (('admm', pnp.rescaled(trained.as_function(model, variables))), ('fbs', fbs_denoise)):
          logging.info('Poisson %s %s', sn, solver)
          results['poisson'].append({'image': 'demo', 'sn': sn, 'solver': solver,
                                     'noisy_psnr': float(psnr(x0, clean, axes=(-2, -1))),
                                     **run(solver, d, term, x0, params, clean, iterations)})
  return results


def table(results: dict) -> str:
  """Markdown: PSNR per cell, then the convergence of each denoiser and solver."""
  head = '| problem | image | mask | start | ' + ' | '.join(
      f'{solver} {LABELS[sn]}' for solver in ('ADMM', 'FBS') for sn in SPECTRAL_NORMS) + ' |'
  lines = [head, '|' + '---|' * (4 + 2 * len(SPECTRAL_NORMS))]

  def cells(rows):
    by = {(r['solver'], r['sn']): r for r in rows}
    return ' | '.join(_psnr_cell(by[(solver, sn)]) for solver in ('admm', 'fbs') for sn in SPECTRAL_NORMS)

  for image in ('Brain', 'Bust'):
    for mask in MASKS:
      rows = [r for r in results['csmri'] if r['image'] == image and r['mask'] == mask]
      lines.append(f'| CS-MRI 30% | {image} | {mask} | {rows[0]["zero_filled_psnr"]:.2f} | {cells(rows)} |')
  rows = results['poisson']
  lines.append(f'| Poisson, peak 1 | demo | - | {rows[0]["noisy_psnr"]:.2f} | {cells(rows)} |')

  lines += ['', '| denoiser | Lip(I-D) bound | Lip(I-D) at test images | '
            'CS-MRI ADMM rate | CS-MRI FBS rate | Poisson ADMM rate | Poisson FBS rate | CS-MRI ADMM res. 100/1 |',
            '|---|---|---|---|---|---|---|---|']
  for sn in SPECTRAL_NORMS:
    rates = []
    for problem in ('csmri', 'poisson'):
      for solver in ('admm', 'fbs'):
        runs = [r['rate'] for r in results[problem] if r['sn'] == sn and r['solver'] == solver]
        rates.append(f'{np.median(runs):.3f}' if np.all(np.isfinite(runs)) else 'diverged')
    ratio = np.median([r['residual_ratio'] for r in results['csmri'] if r['sn'] == sn and r['solver'] == 'admm'])
    for sigma in (CSMRI['sigma'], POISSON['sigma']):
      d = results['denoisers'][f'{sn}-{sigma}']
      name = f'{LABELS[sn]}, sigma {sigma}'
      if sigma == CSMRI['sigma']:
        lines.append(f'| {name} | {d["lipschitz_bound"]:.3g} | {d["jacobian_norm_estimate"]:.3f} | {rates[0]} | '
                     f'{rates[1]} | | | {ratio:.2e} |')
      else:
        lines.append(f'| {name} | {d["lipschitz_bound"]:.3g} | {d["jacobian_norm_estimate"]:.3f} | | | {rates[2]} | '
                     f'{rates[3]} | |')
  return '\n'.join(lines)


def _psnr_cell(r: dict) -> str:
  return f'{r["psnr"]:.2f}' if r['finite'] and np.isfinite(r['psnr']) else 'diverged'


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  panels = [('csmri', 'admm', 'CS-MRI Brain, random 30%, PnP-ADMM'),
            ('csmri', 'fbs', 'CS-MRI Brain, random 30%, PnP-FBS'),
            ('poisson', 'admm', 'Poisson peak 1, PnP-ADMM'), ('poisson', 'fbs', 'Poisson peak 1, PnP-FBS')]
  fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
  for col, (problem, solver, title) in enumerate(panels):
    for sn in SPECTRAL_NORMS:
      r = next(r for r in results[problem] if r['sn'] == sn and r['solver'] == solver
               and r.get('image') in ('Brain', 'demo') and r.get('mask', 'random') == 'random')
      k = np.arange(1, len(r['residual']) + 1)
      axes[0, col].semilogy(k, r['residual'], label=f'{LABELS[sn]} (rate {r["rate"]:.3f})')
      axes[1, col].plot(k, r['psnr_history'], label=LABELS[sn])
    axes[0, col].set_title(title, fontsize=10)
    axes[0, col].set_ylabel('||x_{k+1} - x_k||')
    axes[1, col].set_ylabel('PSNR (dB)')
    axes[1, col].set_xlabel('iteration k')
    axes[0, col].legend(fontsize=8)
    axes[1, col].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def define_flags():
  common.define_shared_flags('Required: its BSD400 trains the denoisers, its CS-MRI and Poisson problems are solved.',
                             'workdirs/pnp', 800, 'denoiser, at batch 128: WORKDIR/simplecnn-SN-SIGMA')
  flags.DEFINE_integer('iterations', 100, 'Plug-and-play solver iterations.')
  flags.DEFINE_string('out', common.project_dir(__file__), 'Where results.json, table.md and residuals.png go.')


def main(argv):
  FLAGS = flags.FLAGS
  def experiment():
    results = experiments(common.pnp_data_dir(FLAGS.data_dir, required=True), FLAGS.workdir, FLAGS.train_steps,
                          FLAGS.iterations, common.overrides(FLAGS.config_overrides))
    return results, table(results), lambda path: plot(results, path)
  common.conclude(argv, experiment, FLAGS.out, 'residuals.png')


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
