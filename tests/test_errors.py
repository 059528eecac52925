"""Bad input fails before anything compiles, with one clear line: through the API, the console scripts (zoo-train,
zoo-eval) and the root scripts that wrap them."""
import os
import shutil

import pytest

import zoo
from tests.helpers import ROOT, one_script_each, run_cli, tiny_config
from zoo import trainer
from zoo.errors import UserError

QUICK = ['--config=configs/quickstart.py']


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(UserError,
                     match=r"Unknown model 'resnetrs51'.*Did you mean.*resnetrs50.*Available models: .*resnetrs420"):
    zoo.create_model('resnetrs51')


def test_bad_override_lists_the_valid_ones():
  with pytest.raises(UserError, match=r"does not accept widht_multiplier. Valid overrides: .*width_multiplier"):
    zoo.create_model('resnetrs50', widht_multiplier=0.5)


@pytest.mark.parametrize('kwargs', [dict(depth=51), dict(stage_depths=(1, 1, 1)), dict(width_multiplier=0.0),
                                    dict(dropout_rate=1.0)])
def test_bad_model_values(kwargs):
  with pytest.raises(UserError):
    zoo.create_model('resnetrs50', **kwargs)


def test_batch_not_divisible_by_devices(tfds_dir, tmp_path):
  with pytest.raises(UserError, match=r'batch_size=12 is not divisible by the number of devices \(8\)'):
    trainer.train_and_evaluate(tiny_config(tfds_dir, batch_size=12), str(tmp_path))


def test_unknown_dataset(tmp_path):
  with pytest.raises(UserError, match='Unknown TFDS dataset'):
    trainer.train_and_evaluate(tiny_config(str(tmp_path), dataset='no_such_dataset'), str(tmp_path / 'w'))


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(UserError, match=r"'mnist' is not prepared in .*tfds build mnist --data_dir=DIR"):
    trainer.train_and_evaluate(tiny_config(str(tmp_path), dataset='mnist'), str(tmp_path / 'w'))


def test_missing_image_folder(tmp_path):
  with pytest.raises(UserError, match='image_folder needs --config.data_dir'):
    trainer.train_and_evaluate(tiny_config(str(tmp_path / 'nope'), dataset='image_folder'), str(tmp_path / 'w'))


def test_num_classes_mismatch(tfds_dir, tmp_path):
  c = tiny_config(tfds_dir)
  c.model_kwargs.num_classes = 1000
  with pytest.raises(UserError, match='num_classes=1000 but dataset .* has 10 classes'):
    trainer.train_and_evaluate(c, str(tmp_path))


def test_unknown_parallelism(tfds_dir, tmp_path):
  with pytest.raises(UserError, match='parallelism must be one of'):
    trainer.train_and_evaluate(tiny_config(tfds_dir, parallelism='gspmd'), str(tmp_path))


@pytest.mark.slow
def test_workdir_of_another_model_is_not_resumed(tfds_dir, tmp_path):
  """A workdir that a run of the quickstart's ResNet-RS at width 0.125 wrote (the checkpoint fixture of
  tools/make_checkpoint_fixtures.py, trained by the trainer: tests/test_checkpoint_fixtures.py resumes it) is not
  resumed by a run of another width, and nothing in it is touched."""
  shutil.copytree(os.path.join(ROOT, 'tests', 'fixtures', 'checkpoints', 'classification_ema'), tmp_path / 'w')
  c = tiny_config(tfds_dir, num_train_steps=3)
  c.model_kwargs.width_multiplier = 0.25
  with pytest.raises(UserError, match='workdir holds checkpoints of model_kwargs='):
    trainer.train_and_evaluate(c, str(tmp_path / 'w'))
  assert sorted(os.listdir(tmp_path / 'w' / 'checkpoints')) == ['2']  # nothing of the user's was touched


@pytest.mark.slow
@pytest.mark.parametrize('script,args,message', one_script_each(['zoo-train', 'train.py'], [
    (QUICK + ['--config.foo=1'], "error: unknown config key 'foo'"),
    (QUICK + ['--config.input.flipp=1'], "error: unknown config key 'input.flipp'; did you mean 'input.flip'?"),
    (['--config=configs/resnet_rs.py:51-160'], 'error: ValueError: ResNet-RS depth 51 is not one of'),
    (QUICK + ['--config.batch_size=abc'], 'error: flag --config.batch_size=abc: invalid literal'),
    (QUICK + ['--config.model=resnetrs51'], "error: Unknown model 'resnetrs51'"),
    (QUICK + ['--config.batch_size=12'], 'error: batch_size=12 is not divisible by the number of devices (8)'),
    (QUICK + ['--num_processes=2'], 'error: a multi-process run started by hand needs all of --coordinator_address'),
    (QUICK + ['extra'], "error: unexpected arguments ['extra']"),
]))
def test_cli_reports_one_line(script, args, message, tmp_path, tfds_dir):
  rc, out, err = run_cli(script, *args, f'--workdir={tmp_path}', f'--config.data_dir={tfds_dir}', devices=8,
                         timeout=120)
  assert rc != 0
  assert err.strip().splitlines()[-1].startswith(message), err[-2000:]
  assert 'Traceback' not in err


@pytest.mark.parametrize('script', ['zoo-eval', 'eval.py'])
def test_eval_without_checkpoints(script, tmp_path, tfds_dir):
  rc, _, err = run_cli(script, *QUICK, f'--workdir={tmp_path}', f'--config.data_dir={tfds_dir}', timeout=120)
  assert rc != 0 and err.strip().splitlines()[-1].startswith('error: no checkpoints in'), err[-2000:]
