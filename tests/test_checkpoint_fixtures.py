"""Checkpoints written before the EMA became optional still evaluate and resume.

tests/fixtures/checkpoints/ holds the step-2 checkpoints of two 3-step runs and what they computed, written at commit
8379ca8 by tools/make_checkpoint_fixtures.py, when every train state carried `ema_params` / `ema_batch_stats`: a
classifier with EMA, and a RealSN denoiser trained with `ema_decay=0`, whose checkpoint still holds a copy of its
weights as EMA. Today's code must read the right weights from both and resume them to the same step 3.
"""
import functools
import json
import os
import shutil

import flax
import jax
import numpy as np
import pytest

import zoo
from tests.helpers import ROOT
from tools import make_checkpoint_fixtures as fixtures
from zoo import checkpoint, ema, evaluation, trainer
from zoo.parallel import DataParallel
from zoo.tasks import get_task

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'checkpoints')
RUNS = {'classification_ema': 'classification', 'denoiser_realsn': 'denoising'}


def config_of(name, tfds_dir):
  return fixtures.classification_config(tfds_dir) if name == 'classification_ema' else fixtures.denoiser_config()


def test_a_bucket_workdir_stays_a_url(tmp_path, monkeypatch):
  """gs://B/R (what a TPU slice's hosts share, docs/tpu.md) is kept as a URL for orbax and epath; a local workdir is
  made absolute (os.path.abspath alone made gs://B/R the local folder ./gs:/B/R)."""
  from zoo import checkpoint
  assert checkpoint.checkpoint_dir('gs://bucket/runs/rs50') == 'gs://bucket/runs/rs50/checkpoints'
  assert str(checkpoint.workdir_path('gs://bucket/runs/rs50') / 'config.json') == 'gs://bucket/runs/rs50/config.json'
  monkeypatch.chdir(tmp_path)
  assert checkpoint.checkpoint_dir('run') == os.path.join(str(tmp_path), 'run', 'checkpoints')
  assert checkpoint.checkpoint_dir(tmp_path / 'run') == os.path.join(str(tmp_path), 'run', 'checkpoints')


def expected(name):
  with open(os.path.join(FIXTURES, name, 'expected.json')) as f:
    return dict(np.load(os.path.join(FIXTURES, name, 'expected.npz'))), json.load(f)


def outputs(config, variables, inputs):
  model = zoo.create_model(config['model'], **config['model_kwargs'])
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs))


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RUNS))
def test_old_checkpoints_give_their_ema_and_their_trained_weights(name):
  arrays, _ = expected(name)
  config, variables = checkpoint.load_variables(os.path.join(FIXTURES, name), RUNS[name])
  np.testing.assert_allclose(outputs(config, variables, arrays['inputs']), arrays['ema_2'], rtol=1e-6, atol=1e-7)
  with checkpoint.manager(os.path.join(FIXTURES, name), read_only=True) as mngr:
    raw, averaged = ema.inference_variables(checkpoint.restore_state(mngr, 2), use_ema=False)
  assert not averaged
  np.testing.assert_allclose(outputs(config, raw, arrays['inputs']), arrays['raw_2'], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RUNS))
def test_old_checkpoints_evaluate_as_they_did(name, tfds_dir):
  _, stored = expected(name)
  metrics = evaluation.evaluate_checkpoint(config_of(name, tfds_dir), os.path.join(FIXTURES, name), step=2)
  assert (metrics.pop('step'), metrics.pop('ema')) == (stored['eval'].pop('step'), stored['eval'].pop('ema'))
  assert metrics == pytest.approx(stored['eval'], rel=1e-5)


def step_from(config, workdir):
  """Step 3 as a straight run takes it from the checkpoint of step 2 in `workdir`: today's training step on today's
  batch 2, outside `train_and_evaluate`. The stored step 3 was trained on the tf.data input's batch 2, before the
  inputs moved to grain (the denoiser's on 2026-12-05 in 47a8870, the classifier's with uint8 batches after it)."""
  task = get_task(config)
  tx = trainer.optimizer(config, trainer.learning_rate_schedule(config, task.steps_per_epoch, 3),
                         task.weight_decay_mask)
  dp = DataParallel(config.parallelism)
  with checkpoint.manager(workdir, read_only=True) as mngr:
    state = trainer.restore_or_init(task, tx, mngr, config, workdir)
  assert int(state.step) == 2
  step = dp.compile(functools.partial(trainer.train_step, task=task, tx=tx, decay=config.ema_decay), 1, 1)
  state, _, _ = step(dp.put_state(state), next(dp.prefetch(task.train_batches(2))), jax.random.key(config.seed + 1))
  return flax.serialization.to_state_dict(dp.get_state(state))


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RUNS))
def test_old_checkpoints_resume_to_the_same_step(name, tfds_dir, tmp_path):
  """Step 3 resumed by today's trainer equals step 3 of the straight run, and a run without EMA (the denoiser's)
  drops the old checkpoint's copy: its new checkpoint holds the weights once. The straight step 3 is taken from
  step 2 by `step_from`, the inputs' random streams having changed since the fixtures were made."""
  arrays, _ = expected(name)
  workdir = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name, 'checkpoints'), checkpoint.checkpoint_dir(workdir))
  config = config_of(name, tfds_dir)
  straight = step_from(config, workdir)
  trainer.train_and_evaluate(config, workdir)
  with checkpoint.manager(workdir, read_only=True) as mngr:
    assert mngr.all_steps() == [2, 3]
    state = checkpoint.restore_state(mngr, 3)
  assert ('ema_params' in state) == (config.ema_decay > 0)
  for use_ema in (False, True):
    variables, _ = ema.inference_variables(state, use_ema)
    reference = outputs(config, ema.inference_variables(straight, use_ema)[0], arrays['inputs'])
    np.testing.assert_allclose(outputs(config, variables, arrays['inputs']), reference, rtol=1e-5, atol=1e-6)
  # And it is a training step: not the weights of step 2.
  assert not np.allclose(outputs(config, ema.inference_variables(state)[0], arrays['inputs']), arrays['raw_2'],
                         rtol=1e-5, atol=1e-6)
