"""The weights' EMA (zoo/ema.py): optional, and never averaging RealSN's power-iteration vectors."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import init_variables
import zoo
from configs import denoiser
from zoo import checkpoint, ema, trainer
from zoo.tasks.denoising import DenoisingTask


@pytest.mark.slow
def test_power_iteration_vectors_are_copied_and_the_rest_averaged():
  model = zoo.create_model('dncnn', depth=3, features=4, spectral_norm='real')
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  old = init_variables(model, 0, x)
  _, updates = model.apply(old, x, train=True, mutable=['batch_stats'])
  new_params = jax.tree.map(lambda p: p + 1.0, old['params'])
  new_stats = updates['batch_stats']
  params, stats = ema.update(old['params'], old['batch_stats'], new_params, new_stats, 0.25)
  expected = jax.tree.map(lambda a, b: 0.25 * a + 0.75 * b, old['params'], new_params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, expected)
  assert set(stats) == {'conv0', 'conv1', 'conv2', 'bn1'}
  for conv in ('conv0', 'conv1', 'conv2'):
    for vector in ('u', 'v'):  # the trained state's own vectors, bit for bit
      np.testing.assert_array_equal(stats[conv][vector], new_stats[conv][vector])
      assert not np.allclose(stats[conv][vector], old['batch_stats'][conv][vector])
  np.testing.assert_allclose(stats['bn1']['mean'], 0.25 * old['batch_stats']['bn1']['mean']
                             + 0.75 * new_stats['bn1']['mean'], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize('decay', [0.0, 0.9])
def test_a_run_without_ema_keeps_and_saves_its_weights_once(decay, tmp_path):
  config = denoiser.get_config('simplecnn-real-15')
  config.ema_decay = decay
  state = trainer.initial_state(DenoisingTask(config), optax.adam(1e-3), jax.random.key(0))
  assert (state.ema_params is None) == (decay == 0)
  with checkpoint.manager(str(tmp_path), async_save=False) as mngr:
    checkpoint.save(mngr, 0, jax.device_get(flax.serialization.to_state_dict(state)), {})
    saved = checkpoint.restore_state(mngr, 0)
  assert sorted(saved) == sorted(['step', 'params', 'batch_stats', 'opt_state']
                                 + (['ema_params', 'ema_batch_stats'] if decay else []))
  variables, averaged = ema.inference_variables(saved)
  assert averaged == (decay > 0)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), variables['params'], saved['params']))
