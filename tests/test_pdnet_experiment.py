"""`python -m projects.pdnet.experiment`: the complex CS-MRI data term of its PnP column, the script end to end on tiny
networks, and its refusal to reuse a workdir trained with another config."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import logged_scalars, run_cli, without_tensorflow
from projects.pdnet import experiment as pdnet_experiment
from projects.pnp import experiment as pnp_experiment
from zoo.errors import UserError
from zoo.inverse import data_terms, mri
from zoo.metrics import psnr
from zoo.tasks.reconstruction import ReconstructionTask


def complex_problem(seed=0, size=16):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
  mask = jnp.asarray(mri.make_mask('random', (size, size), accel=3, seed=seed), jnp.float32)
  return data_terms.ComplexCSMRI(mask=mask, y=mri.forward(jnp.asarray(x, jnp.complex64), mask)), rng


def test_complex_csmri_prox_is_the_exact_minimiser():
  """prox_{alpha f}(z) = argmin f(x) + |x - z|^2 / (2 alpha): the optimality condition grad f(x) + (x - z) / alpha
  vanishes, and no nearby point has a lower objective."""
  term, rng = complex_problem()
  z = jnp.asarray(rng.standard_normal((16, 16, 2)), jnp.float32)
  alpha = 0.7
  x = term.prox(z, alpha)
  assert float(jnp.max(jnp.abs(term.grad(x) + (x - z) / alpha))) < 1e-5

  def objective(v):
    return 0.5 * jnp.sum(jnp.abs(mri.forward(mri.from_channels(v), term.mask) - term.y) ** 2) + \
        jnp.sum(jnp.square(v - z)) / (2 * alpha)
  for _ in range(5):
    assert objective(x) < objective(x + 1e-2 * jnp.asarray(rng.standard_normal(x.shape), jnp.float32))


@pytest.mark.slow
def test_complex_csmri_gradient_and_start():
  """grad is the gradient of 1/2 |A x - y|^2 (jax.grad on the real parts), initial() is A* y."""
  term, rng = complex_problem(1)
  x = jnp.asarray(rng.standard_normal((16, 16, 2)), jnp.float32)
  f = lambda v: 0.5 * jnp.sum(jnp.abs(mri.forward(mri.from_channels(v), term.mask) - term.y) ** 2)  # noqa: E731
  np.testing.assert_allclose(term.grad(x), jax.grad(f)(x), atol=1e-5)
  np.testing.assert_allclose(mri.from_channels(term.initial()), mri.adjoint(term.y, term.mask), atol=1e-6)


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path, monkeypatch):
  """Tiny networks, a few steps and iterations at 32x32, 4x only: every method scored on the four held-out images,
  the tuned parameters from their grids, zero-filled equal to a direct |A* y|, the table and the figure written to
  --out; the denoiser (on the offline photographs: no paper data given) and both PD-Nets trained where the flags
  say. It runs with TensorFlow blocked: the in-memory tasks' training (grain input, TensorBoard events) and the
  project's driver need none."""
  monkeypatch.delenv('ZOO_PNP_DATA', raising=False)
  overrides = {'batch_size': 8, 'model_kwargs.features': 4}
  code, out, err = run_cli(
      *without_tensorflow('projects.pdnet.experiment'), f'--workdir={tmp_path / "w"}', f'--out={tmp_path / "out"}', '--image_size=32',
      '--accels=4', '--train_steps=3', '--iterations=3', '--tv_iterations=5', '--denoiser_steps=2',
      f'--denoiser_workdir={tmp_path / "denoiser"}', f'--config_overrides={json.dumps(overrides)}', devices=1)
  assert code == 0, err[-3000:]
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  r = results['accels']['4']
  assert results['images'] == ['camera', 'coins', 'moon', 'phantom'] and results['denoiser']['dataset'] == 'skimage'
  assert set(r['scores']) == set(pdnet_experiment.METHODS)
  assert all(len(s[k]) == 4 and np.all(np.isfinite(s[k])) for s in r['scores'].values() for k in s)
  assert r['tv_weight'] in pdnet_experiment.TV_WEIGHTS and r['pnp_alpha'] in pdnet_experiment.PNP_ALPHAS
  assert r['learned_parameters']['pdnet_pdhg'] == 30
  assert 0.2 < r['sampling_rate'] < 0.3

  config = pdnet_experiment.pdnet_config('learned', 4, 32, 3, overrides)
  task = ReconstructionTask(config)
  kspace, target = task.eval_data(32)
  zero_filled = pdnet_experiment.zero_filled(kspace, task.sampling_mask((32, 32)))
  direct = psnr(np.clip(zero_filled, 0, 1)[..., None], target)
  np.testing.assert_allclose(r['scores']['zero_filled']['psnr'], direct, atol=1e-4)

  text = (tmp_path / 'out' / 'table.md').read_text()
  assert '| PD-Net learned |' in text and '| TV-PDHG |' in text and text in out
  assert (tmp_path / 'out' / 'figure.png').stat().st_size > 10_000
  assert {d.name for d in (tmp_path / 'w').iterdir()} == {'pdnet-pdhg-cartesian-4', 'pdnet-learned-cartesian-4'}
  # Their TensorBoard events, written without TensorFlow: the training loss at the last step, the final evaluation.
  learned = tmp_path / 'w' / 'pdnet-learned-cartesian-4'
  assert 3 in logged_scalars(learned, 'train/loss') and 3 in logged_scalars(learned, 'eval/psnr')

  # The same workdir with another step count is refused, not retrained over; so is a denoiser workdir of another kind.
  other = pdnet_experiment.pdnet_config('learned', 4, 32, 5, overrides)
  with pytest.raises(UserError, match='num_train_steps=3, wanted 5'):
    pdnet_experiment.trained_pdnet(other, str(tmp_path / 'w' / 'pdnet-learned-cartesian-4'))
  with pytest.raises(UserError, match="spectral_norm='real', wanted None"):
    pnp_experiment.trained_denoiser(str(tmp_path / 'denoiser'), 'none', 15, 2, None, overrides)


@pytest.mark.slow
def test_bad_arguments_are_one_line():
  code, _, err = run_cli('-m projects.pdnet.experiment', 'pdnet', devices=1)
  assert code != 0 and err.strip().splitlines()[-1].startswith('error: unexpected arguments')
  code, _, err = run_cli('-m projects.pdnet.experiment', '--accels=4,x', devices=1)
  assert code != 0 and err.strip().splitlines()[-1] == 'error: --accels takes integers, e.g. 4,8; got 4,x'
