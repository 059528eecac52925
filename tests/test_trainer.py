"""The training loop: schedule, weight decay, EMA, eval padding, data parallelism, resume."""
import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import (BLOCK_TENSORFLOW, STATE_KEYS, init_variables, load_state, logged_scalars, max_abs_diff,
                           run_cli, tiny_config)
from zoo import ema, trainer
from zoo.errors import UserError
from zoo.parallel import DataParallel
from zoo.tasks import get_task
from zoo.tasks.base import weight_decay_mask


def test_learning_rate_schedule_values(tfds_dir):
  c = tiny_config(tfds_dir, batch_size=512, learning_rate=0.1, warmup_epochs=5.0)
  schedule = trainer.learning_rate_schedule(c, steps_per_epoch=10, total_steps=150)
  peak = 0.1 * 512 / 256
  np.testing.assert_allclose([schedule(0), schedule(25), schedule(50)], [0.0, peak / 2, peak], rtol=1e-6)
  np.testing.assert_allclose(schedule(100), peak / 2, rtol=1e-5)  # half way through the cosine
  np.testing.assert_allclose(schedule(150), 0.0, atol=1e-7)


@pytest.mark.slow
def test_weight_decay_excludes_batchnorm_and_biases():
  import zoo
  model = zoo.create_model('resnetrs50', stage_depths=(1, 1, 1, 1), width_multiplier=0.125, num_classes=10)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  mask = weight_decay_mask(params)
  flat = {'/'.join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat['stem/conv1/conv/kernel'] and flat['head/kernel'] and flat['stage1_block0/se/reduce/kernel']
  assert not flat['stem/conv1/bn/scale'] and not flat['stem/conv1/bn/bias']
  assert not flat['head/bias'] and not flat['stage1_block0/se/reduce/bias']
  # The decayed gradient is wd * w on kernels and untouched elsewhere.
  tx = optax.add_decayed_weights(0.5, mask)
  ones = jax.tree.map(jnp.ones_like, jax.tree.map(lambda s: jnp.zeros(s.shape), params))
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, ones), tx.init(ones), ones)
  decayed = {'/'.join(k.key for k in p): float(v.ravel()[0]) for p, v in jax.tree_util.tree_leaves_with_path(updates)}
  assert decayed['head/kernel'] == 0.5 and decayed['head/bias'] == 0.0 and decayed['stem/conv1/bn/scale'] == 0.0


def test_ema_decay_ramps_like_tensorflow():
  np.testing.assert_allclose(ema.decay_at(0.9999, 0.0), 0.1)
  np.testing.assert_allclose(ema.decay_at(0.9999, 90.0), 0.91)
  np.testing.assert_allclose(ema.decay_at(0.9999, 1e7), 0.9999)


@pytest.mark.slow
def test_ema_tracks_params_and_batch_stats(tfds_dir, tmp_path):
  c = tiny_config(tfds_dir, num_train_steps=1, checkpoint_every_steps=1, keep_checkpoints=5)
  workdir = str(tmp_path / 'w')
  trainer.train_and_evaluate(c, workdir)
  from zoo import checkpoint
  with checkpoint.manager(workdir, read_only=True) as mngr:
    state = checkpoint.restore_state(mngr, 1)
  # Initial parameters: a fresh init with the same seed.
  from zoo.tasks import get_task
  task = get_task(c)
  init = init_variables(task.model, c.seed, task.init_inputs(), train=False)
  d = 0.1  # min(0.99, (1 + 0) / (10 + 0)) at the first step
  for kind, averaged in (('params', 'ema_params'), ('batch_stats', 'ema_batch_stats')):
    expected = jax.tree.map(lambda old, new: d * old + (1 - d) * new, init[kind], state[kind])
    assert max_abs_diff(expected, state[averaged]) < 1e-6
  assert max_abs_diff(init['params'], state['params']) > 1e-4  # the step did move the weights


def test_eval_pads_the_last_batch_and_counts_every_example(tfds_dir):
  from zoo.data import pipeline
  c = tiny_config(tfds_dir)
  batches = list(pipeline.eval_batches(get_task(c).data, c, 'test', 96))
  assert len(batches) == 11  # ceil(1000 / 96)
  assert sum(b['mask'].sum() for b in batches) == 1000
  assert batches[-1]['mask'].sum() == 1000 - 10 * 96 and batches[-1]['image'].shape[0] == 96
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  assert np.bincount(labels).tolist() == [99, 106, 102, 92, 82, 117, 89, 107, 105, 101]


@pytest.mark.slow
def test_eval_metrics_equal_direct_computation(tfds_dir):
  """Top-1 over 1,000 examples on 8 devices with a padded last batch equals the plain count."""
  from zoo.data import pipeline
  from zoo.parallel import DataParallel
  from zoo.tasks import get_task
  c = tiny_config(tfds_dir, batch_size=96 * 8 // 8)
  task = get_task(c)
  variables = init_variables(task.model, 3, task.init_inputs(), train=False)
  dp = DataParallel('pmap')
  metrics = trainer.evaluate(task, dp, dp.put_state(variables), c.batch_size)
  batches = list(pipeline.eval_batches(task.data, c, 'test', 1000))
  logits = task.model.apply(variables, task.images(batches[0]), train=False)
  labels = batches[0]['label']
  np.testing.assert_allclose(metrics['top1'], np.mean(np.argmax(logits, -1) == labels), atol=1e-6)
  top5 = np.mean([l in np.argsort(-z)[:5] for z, l in zip(np.asarray(logits), labels)])
  np.testing.assert_allclose(metrics['top5'], top5, atol=1e-6)


# Dropout masks are drawn per device, so the equivalence runs switch it off.
NO_DROPOUT = {'model_kwargs.dropout_rate': 0.0}


@pytest.fixture(scope='module')
def pmap_run(tfds_dir, shared_training):
  config = tiny_config(tfds_dir, parallelism='pmap', **NO_DROPOUT)
  return shared_training('pmap_run', lambda workdir: trainer.train_and_evaluate(config, workdir))[0]


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['pmap', 'shard_map'])
def test_the_step_compiles_once(tfds_dir, mode, caplog):
  """The state a step returns is placed as `put_state` places the first one, so later steps reuse the first step's
  executable (pmap compiled the step again at its second call when the state came from flax.jax_utils.replicate)."""
  c = tiny_config(tfds_dir)
  task, dp = get_task(c), DataParallel(mode)
  tx = trainer.optimizer(c, trainer.learning_rate_schedule(c, 100, 1000), task.weight_decay_mask)
  step = dp.compile(functools.partial(trainer.train_step, task=task, tx=tx, decay=c.ema_decay), num_sharded=1,
                    num_replicated=1)
  batch = dp.put_batch({'image': np.zeros((32, 28, 28, 1), np.float32), 'label': np.zeros(32, np.int32)})
  state = dp.put_state(trainer.initial_state(task, tx, jax.random.key(0)))
  with jax.log_compiles():
    state = jax.block_until_ready(step(state, batch, jax.random.key(1))[0])
    assert any('Finished XLA compilation' in r.getMessage() for r in caplog.records)  # the first call compiles
    caplog.clear()
    for _ in range(2):
      state = jax.block_until_ready(step(state, batch, jax.random.key(1))[0])
  assert not [r.getMessage() for r in caplog.records if 'ompil' in r.getMessage()]


@pytest.mark.slow
def test_shard_map_equals_pmap(tfds_dir, tmp_path, pmap_run):
  workdir = str(tmp_path / 'shard_map')
  trainer.train_and_evaluate(tiny_config(tfds_dir, parallelism='shard_map', **NO_DROPOUT), workdir)
  one, other = load_state(pmap_run), load_state(workdir)
  for key in ('params', 'batch_stats'):
    assert max_abs_diff(one[key], other[key]) < 1e-5, key


@pytest.mark.slow
def test_eight_devices_equal_one_device(tfds_dir, tmp_path, pmap_run):
  """Cross-replica BN and averaged gradients: 8 devices x 4 examples = 1 device x 32 examples."""
  workdir = str(tmp_path / 'one')
  rc, _, err = run_cli('train.py', '--config=configs/quickstart.py', f'--workdir={workdir}',
                       f'--config.data_dir={tfds_dir}', '--config.batch_size=32', '--config.num_train_steps=4',
                       '--config.log_every_steps=2', '--config.eval_every_steps=1000',
                       '--config.checkpoint_every_steps=1000', '--config.model_kwargs.width_multiplier=0.125',
                       '--config.model_kwargs.dropout_rate=0.0',
                       devices=1)
  assert rc == 0, err[-3000:]
  one, other = load_state(pmap_run), load_state(workdir)
  for key in ('params', 'batch_stats'):
    assert max_abs_diff(one[key], other[key]) < 1e-4, key


@pytest.mark.slow
def test_resume_is_bit_identical_and_skips_a_damaged_checkpoint(tfds_dir, tmp_path, caplog):
  """Train 2k steps; damage the last checkpoint (every array file of its state cut to half, as a full disk or a copy
  cut short leaves it): it is moved aside, not deleted, training resumes from step k and reaches 2k with the same
  bits. Then with every checkpoint damaged: an error that moves nothing, rather than a silent fresh start."""
  c = tiny_config(tfds_dir, num_train_steps=6, checkpoint_every_steps=3, keep_checkpoints=5)
  workdir = str(tmp_path / 'w')
  trainer.train_and_evaluate(c, workdir)
  straight = load_state(workdir, 6)
  assert damage(f'{workdir}/checkpoints/6') > 0
  trainer.train_and_evaluate(c, workdir)
  assert 'checkpoint 6 cannot be read' in caplog.text and 'resuming from step 3 instead' in caplog.text
  assert os.path.isdir(f'{workdir}/unreadable_checkpoints/6/state')
  resumed = load_state(workdir, 6)
  for k in STATE_KEYS:
    assert max_abs_diff(straight[k], resumed[k]) == 0.0, k

  for step in (3, 6):
    damage(f'{workdir}/checkpoints/{step}')
  with pytest.raises(UserError, match='no checkpoint in .* reads back .*nothing was moved or deleted'):
    trainer.train_and_evaluate(c, workdir)
  assert sorted(os.listdir(f'{workdir}/checkpoints')) == ['3', '6']
  assert os.listdir(f'{workdir}/unreadable_checkpoints') == ['6']


def damage(step_dir):
  """Cuts every file of a checkpoint's state to half its length; returns how many."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state')) for f in fs]
  for f in files:
    with open(f, 'r+b') as fh:
      fh.truncate(os.path.getsize(f) // 2)
  return len(files)


@pytest.mark.slow
@pytest.mark.optimized
def test_the_quickstart_reaches_its_accuracy_without_tensorflow(tfds_dir, tmp_path):
  """`zoo-train --config=configs/quickstart.py` as `make quickstart` runs it (XLA's optimisations on), in a process
  where TensorFlow cannot be imported: it reaches at least 0.975 top-1 on the 1,000 held-out digits. The measured
  0.982-0.985 depends on the host (XLA:CPU compiles for its processor; README), hence the margin."""
  code = BLOCK_TENSORFLOW + "sys.argv[0] = 'zoo-train'; from zoo.commands.train import run; run()"
  rc, _, err = run_cli('-c', code, '--config=configs/quickstart.py', f'--workdir={tmp_path / "w"}',
                       f'--config.data_dir={tfds_dir}', timeout=600,
                       env=dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='0',
                                XLA_FLAGS='--xla_force_host_platform_device_count=1'))
  assert rc == 0, err[-3000:]
  [final] = re.findall(r"final eval: \{'loss': [0-9.]+, 'top1': ([0-9.]+)", err)
  print(f'quickstart top-1 without TensorFlow: {final}')
  assert float(final) >= 0.975, err[-2000:]


def distinct_ema_copy(source, workdir) -> dict:
  """Writes `source`'s latest checkpoint to `workdir` with EMA weights far from the raw ones in both parts, and
  returns its state: each EMA parameter is the raw one plus noise (std 0.2), each EMA batch mean the raw one plus
  0.05, each EMA variance 1.5 times the raw one. The head's kernel, 30 times larger in both, makes the logits (0.01
  at initialisation) large enough for the loss to tell all four pairs of parameters and statistics apart."""
  from zoo import checkpoint
  with checkpoint.manager(source, read_only=True) as mngr:
    step = mngr.latest_step()
    state, config = checkpoint.restore_state(mngr, step), checkpoint.restore_config(mngr, step)
  head = state['params']['head']
  state['params'] = {**state['params'], 'head': {**head, 'kernel': 30 * np.asarray(head['kernel'])}}
  rng = np.random.default_rng(0)
  state['ema_params'] = jax.tree.map(lambda x: x + 0.2 * rng.standard_normal(x.shape).astype(x.dtype),
                                     state['params'])
  state['ema_batch_stats'] = jax.tree_util.tree_map_with_path(
      lambda path, x: 1.5 * x if path[-1].key == 'var' else x + 0.05, state['batch_stats'])
  with checkpoint.manager(workdir) as mngr:
    checkpoint.save(mngr, step, state, config)
    mngr.wait_until_finished()
  return state


@pytest.mark.slow
def test_eval_cli_reads_ema_or_raw_weights_at_any_resolution(tfds_dir, pmap_run, tmp_path):
  """eval.py in its own process (as users run it): EMA by default, raw on request, any resolution, one JSON line.
  The EMA weights are the EMA parameters with the EMA batch statistics: of the four pairs, evaluated here, it is the
  loss of that one."""
  import json
  from zoo.tasks import get_task
  workdir = str(tmp_path / 'w')
  state = distinct_ema_copy(pmap_run, workdir)

  def run_eval(*flags):
    rc, out, err = run_cli('eval.py', '--config=configs/quickstart.py', f'--workdir={workdir}',
                           f'--config.data_dir={tfds_dir}', '--config.model_kwargs.width_multiplier=0.125',
                           '--config.model_kwargs.dropout_rate=0.0', '--config.batch_size=32', *flags, devices=8)
    assert rc == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])

  ema, raw, larger = run_eval(), run_eval('--use_ema=false'), run_eval('--image_size=36')
  assert ema['ema'] and not raw['ema'] and ema['step'] == raw['step'] == 4
  assert larger['loss'] != ema['loss']
  assert 0.0 <= ema['top1'] <= ema['top5'] <= 1.0
  config, dp = tiny_config(tfds_dir, **NO_DROPOUT), DataParallel('pmap')
  task = get_task(config)
  losses = {(p, s): trainer.evaluate(task, dp, dp.put_state({'params': state[p], 'batch_stats': state[s]}),
                                     config.batch_size)['loss']
            for p in ('params', 'ema_params') for s in ('batch_stats', 'ema_batch_stats')}
  assert ema['loss'] == pytest.approx(losses['ema_params', 'ema_batch_stats'], rel=1e-4), losses
  assert raw['loss'] == pytest.approx(losses['params', 'batch_stats'], rel=1e-4), losses
  values = sorted(losses.values())
  assert all(b > 1.02 * a for a, b in zip(values, values[1:])), losses  # four different losses
  # The training run's TensorBoard events, read back as TensorBoard reads them: train metrics at the logged steps (2,
  # 4), the final evaluation at step 4.
  losses, evals = logged_scalars(pmap_run, 'train/loss'), logged_scalars(pmap_run, 'eval/top1')
  assert sorted(losses) == [2, 4] and all(2.0 < v < 2.5 for v in losses.values()), losses
  assert list(evals) == [4] and 0.0 <= evals[4] <= 1.0, evals


@pytest.mark.slow
def test_profile_on_request_writes_a_trace(tfds_dir, tmp_path):
  import glob
  trainer.train_and_evaluate(tiny_config(tfds_dir, num_train_steps=10, profile=True), str(tmp_path))
  assert glob.glob(f'{tmp_path}/plugins/profile/*/*.xplane.pb')


@pytest.mark.parametrize('mode', ['pmap', 'shard_map'])
def test_a_donating_step_deletes_the_old_state_and_computes_the_same_bits(mode):
  """By default a CPU keeps the state a step was given (there donation made XLA copy every parameter first: RS-50's
  step ran 26% slower); donating (accelerators' default), the step takes over its buffers, and the eval step, which
  is compiled not to donate, keeps its variables."""
  def step_fn(state, x):
    return jax.tree.map(lambda w: w * 0.5 + jax.lax.pmean(jnp.sin(x).sum(), 'batch'), state)

  batch = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
  results = {}
  for donate in (None, False, True):
    dp = DataParallel(mode, donate=donate)
    state = dp.put_state({'w': jnp.arange(4.0), 'b': {'c': jnp.ones((2, 3))}})
    step = dp.compile(step_fn, num_sharded=1)
    new = step(state, dp.put_batch(batch))
    assert [x.is_deleted() for x in jax.tree.leaves(state)] == [donate is True] * 2, donate
    evaluate = dp.compile(lambda v, x: jax.lax.pmean(x.sum() * v['w'].sum(), 'batch'), 1, donate_state=False)
    evaluate(new, dp.put_batch(batch))
    assert not any(x.is_deleted() for x in jax.tree.leaves(new))
    results[donate] = dp.get_state(step(new, dp.put_batch(batch)))  # the donated step's output is a state too
  for donate in (False, True):
    assert jax.tree.all(jax.tree.map(np.array_equal, results[None], results[donate]))
  np.testing.assert_allclose(results[True]['w'], np.arange(4.0) / 4 + 1.5 * np.sin(batch).sum() / 8, atol=1e-6)


@pytest.mark.slow
def test_accelerator_policies_on_cpu_train_the_same_bits(tfds_dir, tmp_path, pmap_run):
  """Donated state and verdicts read one step late, the defaults on accelerators, through the whole loop (eval,
  checkpoints): the same run as with the CPU's defaults, bit for bit."""
  workdir = str(tmp_path / 'w')
  config = tiny_config(tfds_dir, parallelism='pmap', donate_state=True, late_verdict=True, **NO_DROPOUT)
  trainer.train_and_evaluate(config, workdir)
  one, other = load_state(pmap_run), load_state(workdir)
  for k in STATE_KEYS:
    assert max_abs_diff(one[k], other[k]) == 0.0, k
