"""zoo-export (export.py): the artifact runs with jax alone (a subprocess that never imports the zoo) and gives the
live model's logits at several batch sizes; its timm-named weights convert back to the same variables."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from configs import quickstart
from tests.helpers import init_variables, run_cli
from zoo import checkpoint

# The artifact's own loader, in a process that never imports the zoo.
LOADER = '''
import json, runpy, sys
import numpy as np
out = sys.argv[1]
forward = runpy.run_path(out + '/load.py')['load'](out)
images = np.load(out + '/images.npy')
logits = {str(n): np.asarray(forward(images[:n])).tolist() for n in (1, 3, 5)}
assert not any(m == 'zoo' or m.startswith('zoo.') for m in sys.modules)
print(json.dumps(logits))
'''


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A quickstart-sized ResNet-RS on RGB input (timm's stems are RGB) with random BatchNorm statistics, saved as a
  checkpoint."""
  config = quickstart.get_config()
  config.model_kwargs.num_classes = 10
  config.input.channels = 3
  model = zoo.create_model(config.model, **config.model_kwargs)
  variables = init_variables(model, 0, jnp.zeros((1, 28, 28, 3)))
  rng = np.random.default_rng(1)
  variables = {'params': variables['params'], 'batch_stats': jax.tree.map(
      lambda x: rng.uniform(0.5, 1.5, x.shape).astype(np.float32), variables['batch_stats'])}
  path = tmp_path_factory.mktemp('export') / 'run'
  checkpoint.save_pretrained(str(path), variables, config.to_dict())
  return str(path), model, variables


@pytest.mark.slow
def test_exported_function_runs_without_the_zoo(workdir, tmp_path):
  path, model, variables = workdir
  out = tmp_path / 'artifact'
  code, stdout, err = run_cli('zoo-export', f'--workdir={path}', f'--out={out}', '--batch_polymorphic')
  assert code == 0, err[-2000:]
  meta = json.loads((out / 'export.json').read_text())
  assert (meta['model'], meta['image_size'], meta['channels'], meta['batch'], meta['timm']) == (
      'resnetrs50', 28, 3, 'any', 'resnetrs50.tf_in1k')
  # The run's evaluation input (quickstart: 28 px uncropped, the zoo's bilinear resize), not the card's published one
  assert (meta['crop_pct'], meta['interpolation'], meta['weights']) == (1.0, 'bilinear', 'trained')
  images = np.random.default_rng(0).standard_normal((5, 28, 28, 3)).astype(np.float32)
  np.save(out / 'images.npy', images)
  code, stdout, err = run_cli('-c', LOADER, str(out))
  assert code == 0, err[-2000:]
  logits = json.loads(stdout)
  live = np.asarray(model.apply(variables, images, train=False))
  for n in (1, 3, 5):
    np.testing.assert_allclose(np.asarray(logits[str(n)]), live[:n], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_timm_weights_convert_back(workdir, tmp_path):
  from safetensors.numpy import load_file
  path, model, variables = workdir
  out = tmp_path / 'artifact'
  code, _, err = run_cli('export.py', f'--workdir={path}', f'--out={out}')
  assert code == 0, err[-2000:]
  weights = load_file(str(out / 'timm.safetensors'))
  assert weights['conv1.0.weight'].shape[:2] == (8, 3)  # torch layout: (out, in, h, w)
  config = quickstart.get_config()
  back = zoo.convert.from_timm('resnetrs50', weights, **{**config.model_kwargs, 'num_classes': 10})
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, np.asarray(b))
  for script in ('zoo-export', 'export.py'):
    code, _, err = run_cli(script, f'--workdir={path}', f'--out={out}')
    assert code != 0 and 'exists' in err.strip().splitlines()[-1], err[-2000:]


@pytest.mark.parametrize('script', ['zoo-export', 'export.py'])
def test_missing_workdir_is_one_error_line(script, tmp_path):
  code, _, err = run_cli(script, f'--workdir={tmp_path / "none"}', f'--out={tmp_path / "out"}')
  assert code != 0 and 'no checkpoints' in err.strip().splitlines()[-1] and not (tmp_path / 'out').exists()
