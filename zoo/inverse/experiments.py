"""The experiments of the inverse-problem papers: `python -m zoo.inverse.experiments [pnp|pdnet] [--flags]`.

`pdnet` compares PD-Net with the classical reconstructions (zoo/inverse/pdnet_experiment.py). `pnp` (the default)
reproduces the plug-and-play paper's experiments, from its data in --data_dir.

Ryu et al. (2019) claim that PnP-ADMM / PnP-FBS converge with a denoiser whose residual I - D is Lipschitz with a
small enough constant, which real spectral normalisation (RealSN) of every convolution enforces. This script:
1. trains SimpleCNN denoisers at sigma 15 and 40 without SN, with standard SN and with RealSN on the paper's BSD400
   patches (configs/denoiser.py; a workdir that already holds the final checkpoint is reused), and certifies each
   (zoo/inverse/lipschitz.py);
2. runs compressed-sensing MRI (Brain and Bust, the paper's random / radial / Cartesian masks at 30% and its k-space
   noise; sigma-15 denoisers) and Poisson denoising (the paper's demo image at peak 1; sigma-40 denoisers) with
   PnP-ADMM and PnP-FBS for 100 iterations, with the reference code's parameters (zoo/inverse/pnp.py);
3. writes results.json, a residual / PSNR plot and a markdown table to --out, and the table and plot into the
   README between its `pnp-experiments` markers.
"""
import json
import os
import re
import sys

import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from zoo.cli import apply_overrides
from zoo.errors import UserError

FLAGS = flags.FLAGS

SPECTRAL_NORMS = ('none', 'standard', 'real')
LABELS = {'none': 'no SN', 'standard': 'standard SN', 'real': 'RealSN'}
MASKS = ('random', 'radial', 'cartesian')
# The reference scripts' parameters (zoo/inverse/pnp.py): our alpha is the prox weight, theirs is 1 / (2 alpha).
CSMRI = dict(sigma=15, admm_alpha=4.0, fbs_step=0.4)
POISSON = dict(sigma=40, admm_alpha=0.1, fbs_step=0.1)
# Spectral-norm vectors are first converged on the trained weights (zoo/inverse/trained.py); no-op without SN.
POWER_ITERATIONS = 1000
MODES = ('pnp', 'pdnet')


def denoiser_config(sn: str, sigma: int, data_dir: str, steps: int):
  from configs import denoiser
  c = denoiser.get_config(f'simplecnn-{sn}-{sigma}')
  c.dataset, c.data_dir, c.eval_split = 'pnp', data_dir, 'Set12'
  c.num_train_steps, c.eval_every_steps, c.checkpoint_every_steps = steps, 400, 400
  return apply_overrides(c, json.loads(FLAGS.config_overrides))


def trained_denoiser(sn: str, sigma: int):
  """(model, variables, config) of WORKDIR/simplecnn-SN-SIGMA, trained first when it lacks the final step."""
  from zoo import trainer
  from zoo.inverse import trained
  workdir = os.path.join(FLAGS.workdir, f'simplecnn-{sn}-{sigma}')
  trainer.train_unless_done(denoiser_config(sn, sigma, FLAGS.data_dir, FLAGS.train_steps), workdir)
  return trained.load(workdir, power_iterations=POWER_ITERATIONS)


def geometric_rate(residuals) -> float:
  """Per-iteration factor of the residual over the last half of the run, from a log-linear fit: < 1 means the
  iterates converge geometrically."""
  r = np.asarray(residuals, np.float64)[len(residuals) // 2:]
  slope = np.polyfit(np.arange(len(r)), np.log(np.maximum(r, 1e-30)), 1)[0]
  return float(np.exp(slope))


def run(solver: str, denoiser, term, x0, params: dict, x_true):
  from zoo.inverse import pnp
  if solver == 'admm':
    x, history = pnp.pnp_admm(denoiser, term, x0, alpha=params['admm_alpha'], iterations=FLAGS.iterations,
                              x_true=x_true)
  else:
    x, history = pnp.pnp_fbs(denoiser, term, x0, step=params['fbs_step'], iterations=FLAGS.iterations,
                             x_true=x_true)
  residual = np.asarray(history['residual'], np.float64)
  return {'psnr': float(np.asarray(history['psnr'])[-1]), 'psnr_history': np.asarray(history['psnr']).tolist(),
          'residual': residual.tolist(), 'rate': geometric_rate(residual),
          'residual_ratio': float(residual[-1] / residual[0]), 'finite': bool(np.all(np.isfinite(np.asarray(x))))}


def experiments() -> dict:
  from zoo.inverse import data_terms, lipschitz, paper_data, pnp, trained
  from zoo.metrics import psnr
  csmri = paper_data.load_csmri(FLAGS.data_dir)
  poisson = paper_data.load_demo(FLAGS.data_dir, 'poisson')
  results = {'denoisers': {}, 'csmri': [], 'poisson': []}
  for sigma, params in ((CSMRI['sigma'], CSMRI), (POISSON['sigma'], POISSON)):
    for sn in SPECTRAL_NORMS:
      model, variables, config = trained_denoiser(sn, sigma)
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
                                       **run(solver, denoise, term, x0, params, jnp.asarray(image))})
      else:
        clean = jnp.asarray(poisson['clean'], jnp.float32) / poisson['maxval']
        term = data_terms.Poisson(y=jnp.asarray(poisson['noisy'], jnp.float32), peak=poisson['peak'])
        x0 = term.initial()
        fbs_denoise = pnp.rescaled(trained.as_function(model, variables), scale=1 + 20 / 510)
        for solver, d in (('admm', pnp.rescaled(trained.as_function(model, variables))), ('fbs', fbs_denoise)):
          logging.info('Poisson %s %s', sn, solver)
          results['poisson'].append({'image': 'demo', 'sn': sn, 'solver': solver,
                                     'noisy_psnr': float(psnr(x0, clean, axes=(-2, -1))),
                                     **run(solver, d, term, x0, params, clean)})
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


def write_readme(readme: str, section: str, mode: str) -> None:
  """Replaces what stands between the README's `<!-- MODE-experiments:start -->` and `:end -->` markers."""
  start, end = f'<!-- {mode}-experiments:start -->', f'<!-- {mode}-experiments:end -->'
  with open(readme) as f:
    text = f.read()
  if start not in text or end not in text:
    raise UserError(f'{readme} has no {start} ... {end} section to write the results into')
  pattern = re.escape(start) + '.*?' + re.escape(end)
  text = re.sub(pattern, lambda _: f'{start}\n{section}\n{end}', text, flags=re.S)
  with open(readme, 'w') as f:
    f.write(text)


def define_flags():
  """Defined when the script runs, so that importing the module defines no flags."""
  flags.DEFINE_string('data_dir', os.environ.get('ZOO_PNP_DATA', '../shared/pnp_data'),
                      "The plug-and-play paper's data (Demo_mat/, train/, Set12/); default $ZOO_PNP_DATA or "
                      '../shared/pnp_data. pdnet: trains its denoiser on train/ when present.')
  flags.DEFINE_string('workdir', None, 'Networks are trained (or found) here: pnp: WORKDIR/simplecnn-SN-SIGMA '
                      '(default workdirs/pnp); pdnet: WORKDIR/pdnet-RELAXATION-cartesian-ACCEL (workdirs/pdnet).')
  flags.DEFINE_integer('train_steps', None, 'Training steps of each network: pnp: denoisers at batch 128 (default '
                       '800); pdnet: PD-Nets at batch 8 (default 3000).')
  flags.DEFINE_string('out', None, 'Where results.json, table.md and the figure go (default docs/MODE).')
  flags.DEFINE_string('readme', 'README.md', 'README whose MODE-experiments section is rewritten; empty: none.')
  flags.DEFINE_integer('iterations', 100, 'Plug-and-play solver iterations.')
  flags.DEFINE_string('config_overrides', '{}', 'JSON {dotted key: value} applied to every config trained, as '
                      '--config.KEY=VALUE would be, e.g. \'{"batch_size": 64}\'.')
  flags.DEFINE_integer('image_size', 64, 'pdnet: side of the training crops and the test images.')
  flags.DEFINE_list('accels', ['4', '8'], 'pdnet: accelerations of the Cartesian masks.')
  flags.DEFINE_integer('tv_iterations', 200, 'pdnet: TV-PDHG iterations.')
  flags.DEFINE_string('denoiser_workdir', 'workdirs/pnp/simplecnn-real-15', "pdnet: the PnP column's RealSN "
                      'denoiser (sigma 15); trained there first when the directory holds no checkpoint.')
  flags.DEFINE_integer('denoiser_steps', 800, 'pdnet: training steps of that denoiser when it is trained.')


def pnp_main() -> tuple[str, str, str]:
  results = experiments()
  with open(os.path.join(FLAGS.out, 'results.json'), 'w') as f:
    json.dump(results, f)
  markdown = table(results)
  png = os.path.join(FLAGS.out, 'residuals.png')
  plot(results, png)
  return markdown, png, 'PnP residuals and PSNR per iteration'


def pdnet_main() -> tuple[str, str, str]:
  from zoo.inverse import pdnet_experiment
  try:
    accels = [int(a) for a in FLAGS.accels]
  except ValueError:
    raise UserError(f'--accels takes integers, e.g. 4,8; got {",".join(FLAGS.accels)}') from None
  results, arrays = pdnet_experiment.run(
      workdir=FLAGS.workdir, image_size=FLAGS.image_size, accels=accels, train_steps=FLAGS.train_steps,
      pnp_iterations=FLAGS.iterations, tv_iterations=FLAGS.tv_iterations, denoiser_workdir=FLAGS.denoiser_workdir,
      denoiser_steps=FLAGS.denoiser_steps, data_dir=FLAGS.data_dir, overrides=json.loads(FLAGS.config_overrides))
  with open(os.path.join(FLAGS.out, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  png = os.path.join(FLAGS.out, 'figure.png')
  pdnet_experiment.plot(results, arrays, png)
  return pdnet_experiment.table(results), png, 'PD-Net and the classical reconstructions at each acceleration'


def main(argv):
  mode = argv[1] if len(argv) > 1 else 'pnp'
  if mode not in MODES or len(argv) > 2:
    sys.exit(f'error: usage: python -m zoo.inverse.experiments [{"|".join(MODES)}] [--flags]; got {argv[1:]}')
  defaults = {'pnp': ('workdirs/pnp', 800), 'pdnet': ('workdirs/pdnet', 3000)}[mode]
  FLAGS.workdir = FLAGS.workdir or defaults[0]
  FLAGS.train_steps = FLAGS.train_steps or defaults[1]
  FLAGS.out = FLAGS.out or os.path.join('docs', mode)
  os.makedirs(FLAGS.out, exist_ok=True)
  try:
    markdown, png, caption = pnp_main() if mode == 'pnp' else pdnet_main()
    with open(os.path.join(FLAGS.out, 'table.md'), 'w') as f:
      f.write(markdown + '\n')
    if FLAGS.readme:
      rel = os.path.relpath(png, os.path.dirname(os.path.abspath(FLAGS.readme)) or '.')
      write_readme(FLAGS.readme, f'{markdown}\n\n![{caption}]({rel})', mode)
  except UserError as e:
    sys.exit(f'error: {e}')
  print(markdown)


if __name__ == '__main__':
  define_flags()
  app.run(main)
