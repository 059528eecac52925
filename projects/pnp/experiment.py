"""The plug-and-play paper's experiments, reproduced: `python -m projects.pnp.experiment --data_dir=DIR`.

Ryu et al., "Plug-and-Play Methods Provably Converge with Properly Trained Denoisers" (ICML 2019), claim that
PnP-ADMM / PnP-FBS converge with a denoiser whose residual I - D is Lipschitz with a small enough constant, which
real spectral normalisation (RealSN) of every convolution enforces. This script:
1. trains SimpleCNN denoisers at sigma 15 and 40 without SN, with standard SN and with RealSN on the paper's BSD400
   patches, with --own_dncnn also a RealSN-DnCNN (configs/denoiser.py; a workdir that already holds the final
   checkpoint is reused, one that holds part of the run resumes), reads the paper's
   released denoisers (SimpleCNN, RealSN-SimpleCNN, DnCNN; zoo.convert.pnp_denoisers) from --released_dir, and
   certifies each (zoo/inverse/lipschitz.py);
2. runs compressed-sensing MRI (Brain and Bust, the paper's random / radial / Cartesian masks at 30% and its k-space
   noise; sigma-15 denoisers) the paper's way (zoo/inverse/csmri.py), and Poisson denoising (the paper's demo image
   at peak 1; sigma-40 denoisers), with PnP-ADMM and PnP-FBS for 100 iterations (zoo/inverse/pnp.py);
3. writes results.json, table.md and residuals.png to --out (default: this folder, beside its README).
`--denoisers=own` or `=released` runs one kind only. The paper's data (--data_dir or $ZOO_PNP_DATA) is described in
projects/pnp/README.md.
"""
import os

import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from projects import common
from zoo import cli
from zoo.cli import apply_overrides
from zoo.errors import UserError

SPECTRAL_NORMS = ('none', 'standard', 'real')
# The released files, by the names of the paper's Pretrained_models/ (TYPE_noiseSIGMA.pth), and our labels.
RELEASED = {'SimpleCNN': 'released SimpleCNN', 'RealSN_SimpleCNN': 'released RealSN-SimpleCNN',
            'DnCNN': 'released DnCNN'}
# The own RealSN-DnCNN (--own_dncnn): the released DnCNN's architecture (17 layers, BN) with every convolution under
# real spectral normalisation, in WORKDIR/dncnn-real-SIGMA.
OWN_DNCNN = 'dncnn-real'
LABELS = {'none': 'no SN', 'standard': 'standard SN', 'real': 'RealSN', OWN_DNCNN: 'RealSN-DnCNN', **RELEASED}
KINDS = ('own', 'released')
MASKS = ('random', 'radial', 'cartesian')
# The reference scripts' parameters: CS-MRI in their convention (zoo/inverse/csmri.py); Poisson's in the zoo's.
CSMRI = dict(sigma=15)
POISSON = dict(sigma=40, admm_alpha=0.1, fbs_step=0.1)
# Spectral-norm vectors are first converged on the trained weights (zoo/inverse/trained.py); no-op without SN.
POWER_ITERATIONS = 1000
# A reused denoiser workdir must hold the same kind of denoiser (trainer.train_unless_done).
MATCHED_KEYS = (('model',), ('model_kwargs', 'spectral_norm'), ('noise', 'sigma'))


def denoiser_config(sn: str, sigma: int, steps: int, data_dir: str | None, overrides: dict, net: str = 'simplecnn'):
  """configs/denoiser.py:NET-SN-SIGMA for `steps`: on the paper's BSD400 (evaluated on Set12) when `data_dir` is
  given, else on the offline photographs."""
  from configs import denoiser
  c = denoiser.get_config(f'{net}-{sn}-{sigma}')
  if data_dir:
    c.dataset, c.data_dir, c.eval_split = 'pnp', data_dir, 'Set12'
  c.num_train_steps = steps
  c.eval_every_steps = c.checkpoint_every_steps = max(steps // 2, 1)
  return apply_overrides(c, overrides)


def trained_denoiser(workdir: str, sn: str, sigma: int, steps: int, data_dir: str | None, overrides: dict,
                     net: str = 'simplecnn'):
  """(model, variables, config) of the denoiser in `workdir`, trained there first (denoiser_config) when it lacks the
  final step; its spectral-norm vectors converged on the final weights. A workdir holding another network, spectral
  norm or noise level is refused."""
  from zoo import trainer
  from zoo.inverse import trained
  config = denoiser_config(sn, sigma, steps, data_dir, overrides, net)
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


def released_dir(flag_value: str | None, data_dir: str) -> str | None:
  """--released_dir, else DATA_DIR/pretrained or DATA_DIR/Pretrained_models (the paper's folder) where one exists."""
  if flag_value:
    return flag_value
  return next((d for d in (os.path.join(data_dir, 'pretrained'), os.path.join(data_dir, 'Pretrained_models'))
               if os.path.isdir(d)), None)


def denoisers(kinds, data_dir: str, workdir: str, released: str | None, train_steps: int, overrides: dict,
              own_dncnn: bool = False):
  """Yields (key 'SN-SIGMA', 'dncnn-real-SIGMA' or 'TYPE-SIGMA', label, sigma, model, variables, config for the
  certificate): the own denoisers (trained in WORKDIR/simplecnn-SN-SIGMA, and WORKDIR/dncnn-real-SIGMA when
  `own_dncnn`, when missing), then the released files of `released`."""
  from zoo.convert import pnp_denoisers
  # (network, spectral norm, name of its key and label) of each own denoiser
  own = [('simplecnn', sn, sn) for sn in SPECTRAL_NORMS] + ([('dncnn', 'real', OWN_DNCNN)] if own_dncnn else [])
  for sigma in (CSMRI['sigma'], POISSON['sigma']):
    if 'own' in kinds:
      for net, sn, name in own:
        model, variables, config = trained_denoiser(os.path.join(workdir, f'{net}-{sn}-{sigma}'), sn, sigma,
                                                    train_steps, data_dir, overrides, net)
        yield f'{name}-{sigma}', LABELS[name], sigma, model, variables, config
    if 'released' in kinds:
      for kind in RELEASED:
        path = os.path.join(released, f'{kind}_noise{sigma}.pth')
        model, variables, _ = pnp_denoisers.load(path)
        config = {'model': path, 'model_kwargs': {}, 'dataset': 'pnp', 'eval_split': 'Set12', 'data_dir': data_dir,
                  'noise': {'sigma': sigma, 'eval_sigma': sigma}}
        yield f'{kind}-{sigma}', LABELS[kind], sigma, model, variables, config


def experiments(data_dir: str, workdir: str, released: str | None, kinds, train_steps: int, iterations: int,
                overrides: dict, certificate: tuple[int, int] = (500, 100), own_dncnn: bool = False) -> dict:
  """Every denoiser of `kinds` (own ones in WORKDIR/simplecnn-SN-SIGMA, and WORKDIR/dncnn-real-SIGMA when
  `own_dncnn`, trained for `train_steps` on the paper's BSD400 when missing; released ones from `released`), its
  certificate (`certificate`: the power iterations per layer norm and for the Jacobian's norm), and every solver run
  on the paper's problems in `data_dir`: the JSON of results.json."""
  from zoo.inverse import csmri as paper_csmri
  from zoo.inverse import data_terms, lipschitz, paper_data, pnp, trained
  from zoo.metrics import psnr
  csmri = paper_data.load_csmri(data_dir)
  poisson = paper_data.load_demo(data_dir, 'poisson')
  if 'released' in kinds:
    if released is None:
      raise UserError(f'no released denoisers in {data_dir}/pretrained or {data_dir}/Pretrained_models: give '
                      '--released_dir=DIR (the paper\'s Pretrained_models/), or --denoisers=own')
    missing = [f'{k}_noise{s}.pth' for s in (CSMRI['sigma'], POISSON['sigma']) for k in RELEASED
               if not os.path.isfile(os.path.join(released, f'{k}_noise{s}.pth'))]
    if missing:
      raise UserError(f'{released} lacks {", ".join(missing)} of the paper\'s Pretrained_models/')
  results = {'denoisers': {}, 'csmri': [], 'poisson': []}
  for key, label, sigma, model, variables, config in denoisers(kinds, data_dir, workdir, released, train_steps,
                                                               overrides, own_dncnn):
    report = lipschitz.certify(model, variables, config, 40, certificate[0], 3, 64, certificate[1])
    results['denoisers'][key] = {
        'label': label, 'sigma': sigma, 'lipschitz_bound': report['lipschitz_bound'],
        'jacobian_norm_estimate': report['jacobian_norm_estimate'],
        'layer_norms': [row['norm'] for row in report['layers']]}
    # One denoiser function per network: the solvers compile once for it and reuse it for every image and mask.
    function = trained.as_function(model, variables)
    if sigma == CSMRI['sigma']:
      denoise = pnp.rescaled(function, scale=1 + sigma / 510)
      for image_name, image in csmri['images'].items():
        for mask_name in MASKS:
          for solver in ('admm', 'fbs'):
            logging.info('CS-MRI %s %s %s %s', image_name, mask_name, label, solver)
            result = paper_csmri.reconstruct(denoise, image, csmri['masks'][mask_name], csmri['kspace_noise'],
                                             solver, iterations=iterations)
            x = result.pop('x')
            results['csmri'].append({'image': image_name, 'mask': mask_name, 'denoiser': key, 'solver': solver,
                                     **result, 'rate': geometric_rate(result['residual']),
                                     'finite': bool(np.all(np.isfinite(x)))})
    else:
      clean = jnp.asarray(poisson['clean'], jnp.float32) / poisson['maxval']
      term = data_terms.Poisson(y=jnp.asarray(poisson['noisy'], jnp.float32), peak=poisson['peak'])
      x0 = term.initial()
      for solver, d in (('admm', pnp.rescaled(function)), ('fbs', pnp.rescaled(function, scale=1 + 20 / 510))):
        logging.info('Poisson %s %s', label, solver)
        results['poisson'].append({'image': 'demo', 'denoiser': key, 'solver': solver,
                                   'noisy_psnr': float(psnr(x0, clean, axes=(-2, -1))),
                                   **run(solver, d, term, x0, POISSON, clean, iterations)})
  return results


def table(results: dict) -> str:
  """Markdown: per solver, the PSNR of every case (rows) with every denoiser (columns); then each denoiser's
  certificate and convergence."""
  lines = []
  for solver in ('admm', 'fbs'):
    keys = {s: [k for k, d in results['denoisers'].items() if d['sigma'] == s] for s in (CSMRI['sigma'],
                                                                                          POISSON['sigma'])}
    labels = [results['denoisers'][k]['label'] for k in keys[CSMRI['sigma']]]
    lines += [f'PnP-{solver.upper()}, PSNR (dB) of the last iterate:', '',
              '| problem | image | mask | start | ' + ' | '.join(labels) + ' |', '|' + '---|' * (4 + len(labels))]
    for image in ('Brain', 'Bust'):
      for mask in MASKS:
        by = {r['denoiser']: r for r in results['csmri']
              if (r['image'], r['mask'], r['solver']) == (image, mask, solver)}
        start = next(iter(by.values()))['zero_filled_psnr']
        lines.append(f'| CS-MRI 30% | {image} | {mask} | {start:.2f} | '
                     + ' | '.join(_psnr_cell(by[k]) for k in keys[CSMRI['sigma']]) + ' |')
    by = {r['denoiser']: r for r in results['poisson'] if r['solver'] == solver}
    start = next(iter(by.values()))['noisy_psnr']
    lines += [f'| Poisson, peak 1 | demo | - | {start:.2f} | '
              + ' | '.join(_psnr_cell(by[k]) for k in keys[POISSON['sigma']]) + ' |', '']

  lines += ['| denoiser | Lip(I-D) bound | Lip(I-D) at test images | '
            'CS-MRI ADMM rate | CS-MRI FBS rate | Poisson ADMM rate | Poisson FBS rate |',
            '|---|---|---|---|---|---|---|']
  for key, d in results['denoisers'].items():
    problem = 'csmri' if d['sigma'] == CSMRI['sigma'] else 'poisson'
    rates = []
    for solver in ('admm', 'fbs'):
      runs = [r['rate'] for r in results[problem] if r['denoiser'] == key and r['solver'] == solver]
      rates.append(f'{np.median(runs):.3f}' if np.all(np.isfinite(runs)) else 'diverged')
    cells = rates + ['', ''] if problem == 'csmri' else ['', ''] + rates
    lines.append(f'| {d["label"]}, sigma {d["sigma"]} | {d["lipschitz_bound"]:.3g} | '
                 f'{d["jacobian_norm_estimate"]:.3f} | ' + ' | '.join(cells) + ' |')
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
    for r in results[problem]:
      if r['solver'] != solver or r['image'] not in ('Brain', 'demo') or r.get('mask', 'random') != 'random':
        continue
      label = results['denoisers'][r['denoiser']]['label']
      k = np.arange(1, len(r['residual']) + 1)
      axes[0, col].semilogy(k, np.maximum(r['residual'], 1e-12), label=f'{label} (rate {r["rate"]:.3f})')
      axes[1, col].plot(k, r['psnr_history'], label=label)
    axes[0, col].set_title(title, fontsize=10)
    axes[0, col].set_ylabel('||x_{k+1} - x_k||')
    axes[1, col].set_ylabel('PSNR (dB)')
    axes[1, col].set_xlabel('iteration k')
    axes[0, col].legend(fontsize=7)
    axes[1, col].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def define_flags():
  common.define_shared_flags('Required: its BSD400 trains the denoisers, its CS-MRI and Poisson problems are solved.',
                             'workdirs/pnp', 800, 'denoiser, at batch 128: WORKDIR/simplecnn-SN-SIGMA')
  flags.DEFINE_integer('iterations', 100, 'Plug-and-play solver iterations.')
  flags.DEFINE_string('released_dir', None, 'The paper\'s released denoisers (its Pretrained_models/: '
                      'TYPE_noiseSIGMA.pth); default DATA_DIR/pretrained or DATA_DIR/Pretrained_models.')
  flags.DEFINE_list('denoisers', list(KINDS), 'Which denoisers: own (trained here), released, or both.')
  flags.DEFINE_bool('own_dncnn', False, 'Also an own RealSN-DnCNN (17 layers, BN: the released DnCNN\'s network with '
                    'every convolution spectrally normalised) at each sigma, in WORKDIR/dncnn-real-SIGMA; it trains '
                    'about 6.7 times slower than a SimpleCNN (0.21 against 1.41 steps/s on a 2-core CPU, '
                    'projects/pnp/README.md).')
  flags.DEFINE_integer('certificate_iterations', 500, 'Power iterations for each layer\'s operator norm in the '
                       'certificate (on 40x40 inputs).')
  flags.DEFINE_integer('jacobian_iterations', 100, 'Power iterations for the Jacobian norm estimate of I - D (on three '
                       '64x64 noisy eval images).')
  flags.DEFINE_string('out', common.project_dir(__file__), 'Where results.json, table.md and residuals.png go.')


def main(argv):
  FLAGS = flags.FLAGS
  def experiment():
    if not FLAGS.denoisers or set(FLAGS.denoisers) - set(KINDS):
      raise UserError(f'--denoisers must list some of {", ".join(KINDS)}, got {FLAGS.denoisers}')
    data_dir = common.pnp_data_dir(FLAGS.data_dir, required=True)
    results = experiments(data_dir, FLAGS.workdir, released_dir(FLAGS.released_dir, data_dir), FLAGS.denoisers,
                          FLAGS.train_steps, FLAGS.iterations, common.overrides(FLAGS.config_overrides),
                          (FLAGS.certificate_iterations, FLAGS.jacobian_iterations), FLAGS.own_dncnn)
    return results, table(results), lambda path: plot(results, path)
  common.conclude(argv, experiment, FLAGS.out, 'residuals.png')


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
