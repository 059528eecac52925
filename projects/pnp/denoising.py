"""Denoising PSNR of plug-and-play denoisers on Set12 and BSD68 (the paper's Set68), beside the DnCNN paper's own
figures: `python -m projects.pnp.denoising --data_dir=DIR [--released_dir=DIR] [--workdirs=W1,W2,...]`.

Each denoiser is evaluated at the noise level it was trained for: every whole image of the set, plus Gaussian noise
of that sigma (0..255 units) drawn from numpy's default_rng(sigma + image index) in float64, denoised once (no
clipping of the noisy input, as the training of these denoisers saw it), PSNR with peak 1 of the output clipped to
[0, 1], averaged over the set's images. The released denoisers are the paper's Pretrained_models/ files
(zoo.convert.pnp_denoisers); --workdirs are denoisers the zoo trained (configs/denoiser.py).

DnCNN-S's figures are Zhang et al. 2017 (IEEE TIP), Table: BSD68 31.73 / 29.23 / 26.23 dB and Set12 average 32.86 /
30.44 / 27.18 dB at sigma 15 / 25 / 50 (theirs, not measured here); they publish none at sigma 40.
"""
import json
import os

import numpy as np
from absl import flags, logging

from projects import common
from zoo import cli
from zoo.errors import UserError
from zoo.metrics import psnr

SETS = {'Set12': 'Set12', 'BSD68': 'Set68'}
DNCNN_S = {15: {'Set12': 32.86, 'BSD68': 31.73}, 25: {'Set12': 30.44, 'BSD68': 29.23},
           50: {'Set12': 27.18, 'BSD68': 26.23}}  # Zhang et al. 2017's DnCNN-S (theirs)


def evaluate(denoise, images: list, sigma: float) -> float:
  """Mean PSNR (peak 1, output clipped) of `denoise` ([H, W] -> [H, W]) over `images` at noise `sigma` (/255)."""
  values = []
  for i, image in enumerate(images):
    noisy = image + np.random.default_rng(int(sigma) + i).normal(0, sigma / 255, image.shape)
    out = np.clip(np.asarray(denoise(noisy.astype(np.float32)), np.float64), 0, 1)
    values.append(float(psnr(out, image, axes=(-2, -1))))
  return float(np.mean(values))


def denoisers(released: str | None, workdirs: list[str]):
  """Yields (label, sigma, jitted denoiser function) of each released file and each workdir."""
  import jax
  from zoo.convert import pnp_denoisers
  from zoo.inverse import trained
  if released:
    for name in sorted(os.listdir(released)):
      if name.endswith('.pth') and 'noise' in name:
        model, variables, description = pnp_denoisers.load(os.path.join(released, name))
        yield (f'released {description}', int(name[:-4].rsplit('noise', 1)[1]),
               jax.jit(trained.as_function(model, variables)))
  for workdir in workdirs:
    model, variables, config = trained.load(workdir)
    yield (f'{config["model"]} {config["model_kwargs"].get("spectral_norm") or "no"} SN ({workdir})',
           trained.noise_sigma(config) * 255, jax.jit(trained.as_function(model, variables)))


def table(rows: list[dict]) -> str:
  lines = ['| denoiser | sigma | Set12 | BSD68 | DnCNN-S Set12 (theirs) | DnCNN-S BSD68 (theirs) |',
           '|---|---|---|---|---|---|']
  for r in rows:
    theirs = DNCNN_S.get(int(r['sigma']), {})
    lines.append(f'| {r["denoiser"]} | {r["sigma"]:g} | {r["Set12"]:.2f} | {r["BSD68"]:.2f} | '
                 f'{theirs.get("Set12", "-")} | {theirs.get("BSD68", "-")} |')
  return '\n'.join(lines)


def define_flags():
  flags.DEFINE_string('data_dir', None, f'The directory of {common.PNP_DATA_ORIGIN}; default '
                      f'${common.PNP_DATA_ENV}.')
  flags.DEFINE_string('released_dir', None, 'The paper\'s released denoisers (Pretrained_models/); default '
                      'DATA_DIR/pretrained or DATA_DIR/Pretrained_models where one exists.')
  flags.DEFINE_list('workdirs', [], 'Denoisers trained by the zoo.')
  flags.DEFINE_string('out', None, 'Also write the rows as JSON here.')


def main(argv):
  from projects.pnp import experiment
  from zoo.inverse import paper_data
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  f = flags.FLAGS
  data_dir = common.pnp_data_dir(f.data_dir, required=True)
  images = {name: paper_data.load_images(data_dir, folder) for name, folder in SETS.items()}
  released = experiment.released_dir(f.released_dir, data_dir)
  if not released and not f.workdirs:
    raise UserError('nothing to evaluate: give --released_dir=DIR or --workdirs=DIR,...')
  rows = []
  for label, sigma, denoise in denoisers(released, f.workdirs):
    logging.info('evaluating %s at sigma %g', label, sigma)
    rows.append({'denoiser': label, 'sigma': sigma, **{name: evaluate(denoise, images[name], sigma)
                                                      for name in SETS}})
  if f.out:
    with open(f.out, 'w') as out:
      json.dump(rows, out, indent=1)
  print(table(rows))


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)
