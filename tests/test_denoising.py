"""The denoising task, its config, the Lipschitz certificate and the plug-and-play project's script."""
import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from configs import denoiser
from helpers import ROOT, apply_overrides, run_cli
from zoo import trainer
from zoo.errors import UserError
from zoo.tasks.denoising import DenoisingTask


def tiny_config(**overrides):
  """simplecnn-real-25 shrunk: 8 features, 16x16 patches, 32-image batches (4 per device), 120 steps."""
  c = denoiser.get_config('simplecnn-real-25')
  c.model_kwargs.features = 8
  c.input.patch_size = 16
  c.input.patch_stride = 24
  c.input.eval_image_size = 64
  c.batch_size = 32
  c.num_train_steps = 120
  c.learning_rate = 4e-3
  c.log_every_steps = 60
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  return apply_overrides(c, overrides)


def test_config_argument():
  c = denoiser.get_config('dncnn-standard-40')
  assert (c.model, c.model_kwargs.spectral_norm, c.noise.sigma) == ('dncnn', 'standard', 40.0)
  assert (c.batch_size, c.input.patch_size, c.learning_rate, c.schedule) == (128, 40, 1e-3, 'step')
  blind = denoiser.get_config('simplecnn-none-blind')
  assert (blind.model_kwargs.spectral_norm, blind.noise.sigma, blind.noise.eval_sigma) == (None, 0.0, 25.0)
  for bad in ('simplecnn-real', 'unet-real-15', 'dncnn-miyato-15', 'dncnn-real-x'):
    with pytest.raises(ValueError, match='NET-SN-SIGMA|SIGMA must be'):
      denoiser.get_config(bad)


def test_step_schedule_divides_half_way():
  schedule = trainer.learning_rate_schedule(tiny_config(), steps_per_epoch=10, total_steps=100)
  np.testing.assert_allclose([schedule(0), schedule(49), schedule(50), schedule(99)],
                             [4e-3 / 4, 4e-3 / 4, 4e-4 / 4, 4e-4 / 4], rtol=1e-6)


def test_resumed_batches_are_the_straight_runs():
  task = DenoisingTask(tiny_config(batch_size=8))
  straight = task.train_batches(0)
  batches = [next(straight)['image'] for _ in range(5)]
  resumed = next(task.train_batches(3))['image']
  np.testing.assert_array_equal(resumed, batches[3])
  assert batches[0].dtype == np.uint8 and batches[0].shape == (8, 16, 16, 1)
  assert not np.array_equal(batches[0], batches[1])


def test_held_out_images_are_not_trained_on():
  task = DenoisingTask(tiny_config())
  patches = {p.tobytes() for p in task.examples[..., 0]}
  crops = np.round(task.eval_images[:, :16, :16, 0] * 255).astype(np.uint8)
  assert not any(c.tobytes() in patches for c in crops)
  assert len(task.eval_images) == 3


def test_bad_noise_settings():
  with pytest.raises(UserError, match='noise.sigma must be'):
    DenoisingTask(tiny_config(**{'noise.sigma': -1.0}))
  with pytest.raises(UserError, match="dataset 'pnp' needs"):
    DenoisingTask(tiny_config(dataset='pnp')).check_data()


@pytest.fixture(scope='module')
def trained(shared_training):
  return shared_training('denoiser', lambda workdir: trainer.train_and_evaluate(tiny_config(), workdir))


@pytest.mark.slow
def test_denoiser_learns_on_eight_devices(trained):
  _, metrics = trained
  # sigma 25: the noisy held-out crops are at 20.2 dB; 120 steps of a tiny RealSN net gain ~2.9 dB.
  assert metrics['psnr_noisy'] == pytest.approx(20.2, abs=0.2)
  assert metrics['psnr'] > metrics['psnr_noisy'] + 2.0, metrics


@pytest.mark.slow
def test_lipschitz_certificate_cli(trained):
  workdir, _ = trained
  code, out, err = run_cli('-m zoo.inverse.lipschitz', f'--workdir={workdir}', '--iterations=300',
                           '--num_images=1', '--jacobian_iterations=30', devices=1)
  assert code == 0, err[-2000:]
  report = json.loads(out.strip().splitlines()[-1])
  norms = [row['norm'] for row in report['layers']]
  assert [row['layer'] for row in report['layers']] == ['conv0', 'conv1', 'conv2', 'conv3']
  # Each layer is normalised to 1^(1/4). One power iteration per step trails weights that move fast (learning rate
  # 4e-3 here): the norms measured after 120 steps were 1.00-1.08.
  np.testing.assert_allclose(norms, 1.0, atol=0.12)
  assert min(norms) > 0.99
  assert report['lipschitz_bound'] == pytest.approx(np.prod(norms), rel=1e-6)
  assert 0 < report['jacobian_norm_estimate'] <= report['lipschitz_bound'] * 1.001
  assert 'PnP-ADMM (eps < 1)' in out
  # Power iterations on the final weights close the gap: every layer at 1 (to the certificate's own precision).
  code, out, err = run_cli('-m zoo.inverse.lipschitz', f'--workdir={workdir}', '--iterations=300',
                           '--num_images=1', '--jacobian_iterations=30', '--power_iterations=300', devices=1)
  assert code == 0, err[-2000:]
  converged = json.loads(out.strip().splitlines()[-1])
  np.testing.assert_allclose([row['norm'] for row in converged['layers']], 1.0, atol=0.01)
  assert converged['lipschitz_bound'] < report['lipschitz_bound']


def test_lipschitz_cli_without_checkpoints(tmp_path):
  code, _, err = run_cli('-m zoo.inverse.lipschitz', f'--workdir={tmp_path}', devices=1)
  assert code != 0 and 'no checkpoints in' in err.strip().splitlines()[-1]


def fake_paper_data(root):
  """The paper's data layout with small random contents: 64x64 CS-MRI images, masks and noise, a Poisson demo,
  and a few training / Set12 images."""
  rng = np.random.default_rng(0)
  mri = os.path.join(root, 'Demo_mat', 'CS_MRI')
  os.makedirs(mri)
  for name in ('Brain', 'Bust'):
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(os.path.join(mri, f'{name}.jpg'))
  for kind in ('Random', 'Radial', 'Cartesian'):
    scipy.io.savemat(os.path.join(mri, f'Q_{kind}30.mat'), {'Q1': (rng.random((64, 64)) < 0.3).astype(np.float64)})
  noises = rng.normal(size=(64, 64)) + 1j * rng.normal(size=(64, 64))
  scipy.io.savemat(os.path.join(mri, 'noises.mat'), {'noises': noises})
  clean = rng.integers(0, 256, (64, 64), dtype=np.uint8)
  scipy.io.savemat(os.path.join(root, 'Demo_mat', 'poisson_demo.mat'),
                   {'clean': clean, 'noisy': rng.poisson(clean / 255.0).astype(np.uint8), 'peak': 1.0, 'maxval': 255.0})
  for split, count in (('train', 4), ('Set12', 2), ('Set68', 2)):
    os.makedirs(os.path.join(root, split))
    for i in range(count):
      Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(os.path.join(root, split, f'{i:02d}.png'))
  # The released denoisers' names, holding the small files in their layout (tools/make_pnp_fixtures.py).
  os.makedirs(os.path.join(root, 'pretrained'))
  for kind, fixture in (('SimpleCNN', 'simplecnn'), ('RealSN_SimpleCNN', 'realsn_simplecnn'), ('DnCNN', 'dncnn')):
    for sigma in (15, 40):
      shutil.copy(os.path.join(ROOT, 'tests', 'fixtures', 'pnp', f'{fixture}.pth'),
                  os.path.join(root, 'pretrained', f'{kind}_noise{sigma}.pth'))


@pytest.mark.slow
@pytest.mark.optimized
def test_experiment_script_writes_table_and_plot(tmp_path, monkeypatch):
  """The script on the paper's layout with tiny contents, found through $ZOO_PNP_DATA: every own denoiser trained in
  its workdir (with --own_dncnn the RealSN-DnCNN too: 4 layers here, 2 of them with BN), the released ones read from
  DATA/pretrained, every problem and solver run with each, results, table and plot written to --out."""
  data = str(tmp_path / 'data')
  fake_paper_data(data)
  monkeypatch.setenv('ZOO_PNP_DATA', data)
  overrides = {'batch_size': 8, 'model_kwargs.features': 4, 'model_kwargs.depth': 4, 'input.eval_image_size': 64}
  code, out, err = run_cli('-m projects.pnp.experiment', f'--workdir={tmp_path / "w"}', '--train_steps=2',
                           '--iterations=4', f'--out={tmp_path / "out"}', f'--config_overrides={json.dumps(overrides)}',
                           '--certificate_iterations=20', '--jacobian_iterations=5', '--own_dncnn', devices=1)
  assert code == 0, err[-3000:]
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert len(results['csmri']) == 2 * 3 * 7 * 2 and len(results['poisson']) == 7 * 2
  dncnn = results['denoisers']['dncnn-real-15']
  assert dncnn['label'] == 'RealSN-DnCNN' and len(dncnn['layer_norms']) == 4 + 2  # 4 convolutions, 2 BatchNorms
  assert all(len(r['residual']) == 4 and len(r['psnr_history']) == 4 for r in results['csmri'])
  text = (tmp_path / 'out' / 'table.md').read_text()
  assert '| CS-MRI 30% | Brain | random |' in text and '| RealSN, sigma 40 |' in text and text in out
  assert '| released DnCNN, sigma 15 |' in text and 'released RealSN-SimpleCNN |' in text
  assert '| RealSN-DnCNN, sigma 40 |' in text and '| RealSN | RealSN-DnCNN | released SimpleCNN |' in text
  assert (tmp_path / 'out' / 'residuals.png').stat().st_size > 10_000
  assert {d.name for d in (tmp_path / 'w').iterdir() if d.is_dir()} == {
      f'{net}-{s}' for net in ('simplecnn-none', 'simplecnn-standard', 'simplecnn-real', 'dncnn-real')
      for s in (15, 40)}


@pytest.mark.slow
def test_experiment_script_names_the_data_it_needs(tmp_path, monkeypatch):
  """Without --data_dir and $ZOO_PNP_DATA, or with a directory that lacks the paper's files: one error line saying
  what to give and where the data comes from, before anything is trained."""
  monkeypatch.delenv('ZOO_PNP_DATA', raising=False)
  code, _, err = run_cli('-m projects.pnp.experiment', f'--workdir={tmp_path / "w"}', devices=1)
  last = err.strip().splitlines()[-1]
  assert code != 0 and last.startswith('error: give --data_dir=DIR or set ZOO_PNP_DATA=DIR')
  assert 'uclaopt/Provable_Plug_and_Play' in last
  code, _, err = run_cli('-m projects.pnp.experiment', f'--data_dir={tmp_path / "empty"}',
                         f'--workdir={tmp_path / "w"}', devices=1)
  last = err.strip().splitlines()[-1]
  assert code != 0 and last.startswith(f'error: {tmp_path / "empty" / "Demo_mat" / "CS_MRI"}') and 'not found' in last
  assert not (tmp_path / 'w').exists()


@pytest.mark.slow
def test_eval_covers_each_held_out_image_once():
  """3 images on 8 devices: one batch of 8 with 5 masked pads; PSNR equals the direct per-image mean."""
  import jax
  from zoo.parallel import DataParallel
  task = DenoisingTask(tiny_config())
  batches = list(task.eval_batches(32))
  assert len(batches) == 1 and batches[0]['clean'].shape == (8, 64, 64, 1) and batches[0]['mask'].sum() == 3
  variables = jax.jit(task.model.init)(jax.random.key(0), task.init_inputs())
  dp = DataParallel('pmap')
  metrics = trainer.evaluate(task, dp, dp.put_state(variables), 32)
  b = batches[0]
  out = np.clip(np.asarray(task.model.apply(variables, b['noisy'][:3])), 0, 1)
  direct = np.mean([10 * np.log10(1 / np.mean((o - c) ** 2)) for o, c in zip(out, b['clean'][:3])])
  assert metrics['psnr'] == pytest.approx(direct, abs=1e-3)


@pytest.mark.slow
def test_denoising_table_of_the_released_denoisers(tmp_path):
  """projects/pnp/denoising.py on the fake layout: a row per released file at its sigma, Set12 and BSD68 PSNR as
  computed directly, DnCNN-S's published figures beside the sigma-15 rows and none at 40."""
  from projects.pnp import denoising
  from zoo.convert import pnp_denoisers
  from zoo.inverse import paper_data, trained
  data = str(tmp_path / 'data')
  fake_paper_data(data)
  code, out, err = run_cli('-m projects.pnp.denoising', f'--data_dir={data}', f'--out={tmp_path / "rows.json"}',
                           devices=1)
  assert code == 0, err[-3000:]
  rows = {(r['denoiser'], r['sigma']): r for r in json.loads((tmp_path / 'rows.json').read_text())}
  assert len(rows) == 6
  model, variables, _ = pnp_denoisers.load(os.path.join(data, 'pretrained', 'DnCNN_noise15.pth'))
  direct = denoising.evaluate(trained.as_function(model, variables), paper_data.load_images(data, 'Set68'), 15)
  assert rows[('released DnCNN (5 layers, BN)', 15)]['BSD68'] == pytest.approx(direct, abs=1e-4)
  assert '| released DnCNN (5 layers, BN) | 15 |' in out and '| 32.86 | 31.73 |' in out and '| 40 |' in out
  assert 'evaluating released DnCNN (5 layers, BN) at sigma 15' in err  # the project's INFO lines reach the console


def test_patches_at_the_papers_four_scales():
  """DnCNN's training set as the paper reuses it: a 180x180 image gives 225 + 169 + 121 + 81 = 596 patches of 40 at
  stride 10 over scales 1, 0.9, 0.8, 0.7 (BSD400: 238,400); scale 1 is the image's own pixels, the others its bicubic
  resize."""
  import cv2
  from zoo.data import natural_images
  image = np.random.default_rng(0).random((180, 180)).astype(np.float32)
  out = natural_images.patches([image], 40, 10, (1.0, 0.9, 0.8, 0.7))
  assert out.shape == (596, 40, 40, 1) and out.dtype == np.uint8
  pixels = np.round(image * 255).astype(np.uint8)
  assert np.array_equal(out[16, :, :, 0], pixels[10:50, 10:50])
  assert np.array_equal(out[225, :, :, 0], cv2.resize(pixels, (162, 162), interpolation=cv2.INTER_CUBIC)[:40, :40])
  assert len(natural_images.patches([image], 40, 10)) == 225
  assert denoiser.get_config('simplecnn-real-15').input.patch_scales == (1.0, 0.9, 0.8, 0.7)
