"""zoo/cli.py: the commands' environment defaults (the fast XLA:CPU flags, a user's own XLA_FLAGS kept), the console
(the zoo's progress, evals and checkpoints; other libraries' INFO records only with -v 1)."""
import glob
import json
import logging
import os
import re

import pytest

from tests.helpers import ROOT, STEPS, run_cli
from zoo import cli

FAST = cli.FAST_CPU_FLAGS[0]
DEVICES = '--xla_force_host_platform_device_count=8'


@pytest.mark.parametrize('given,cpu_only,expected', [
    ({}, True, {'XLA_FLAGS': FAST, 'TF_CPP_MIN_LOG_LEVEL': '2'}),
    ({'XLA_FLAGS': DEVICES, 'TF_CPP_MIN_LOG_LEVEL': '0'}, True,
     {'XLA_FLAGS': f'{DEVICES} {FAST}', 'TF_CPP_MIN_LOG_LEVEL': '0'}),
    # The user's own value of the flag stays, alone.
    ({'XLA_FLAGS': f'--xla_cpu_experimental_ynn_fusion_type=individual_convolution {DEVICES}'}, True,
     {'XLA_FLAGS': f'--xla_cpu_experimental_ynn_fusion_type=individual_convolution {DEVICES}',
      'TF_CPP_MIN_LOG_LEVEL': '2'}),
    ({'XLA_FLAGS': ''}, True, {'XLA_FLAGS': '', 'TF_CPP_MIN_LOG_LEVEL': '2'}),  # set and empty: XLA's defaults
    ({'XLA_FLAGS': DEVICES}, False, {'XLA_FLAGS': DEVICES, 'TF_CPP_MIN_LOG_LEVEL': '2'}),  # an accelerator
])
def test_environment_defaults(given, cpu_only, expected):
  environ = dict(given)
  cli.environment_defaults(environ, cpu_only)
  assert environ == expected
  cli.environment_defaults(environ, cpu_only)  # a command started by another keeps the flags once
  assert environ == expected


@pytest.mark.parametrize('environ,cpu_only', [({}, True), ({'JAX_PLATFORMS': 'cpu'}, True),
                                              ({'JAX_PLATFORMS': 'cuda'}, False),
                                              ({'JAX_PLATFORMS': 'cpu,tpu'}, False),
                                              ({'TPU_LIBRARY_PATH': '/opt/libtpu.so'}, False)])
def test_jax_runs_on_cpu_only_here(environ, cpu_only):
  """This machine has no accelerator plugin and the measured jaxlib: the platforms decide."""
  assert cli.jax_runs_on_cpu_only(environ) is cpu_only


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['namespace', 'entry_point'])
def test_an_installed_accelerator_plugin_keeps_xla_flags_alone(layout, tmp_path):
  """A GPU or TPU plugin brings its own XLA build, which may not know the flags: both ways jax discovers plugins (a
  module under the `jax_plugins` namespace package, a `jax_plugins` entry point) are seen, as installed packages."""
  if layout == 'namespace':
    (tmp_path / 'jax_plugins' / 'xla_example').mkdir(parents=True)
    (tmp_path / 'jax_plugins' / 'xla_example' / '__init__.py').write_text('')
  else:
    info = tmp_path / 'jax_example_plugin-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: jax-example-plugin\nVersion: 1.0\n')
    (info / 'entry_points.txt').write_text('[jax_plugins]\nxla_example = jax_example_plugin\n')
  code = 'import os; from zoo import cli; print(cli.jax_runs_on_cpu_only(os.environ))'
  rc, out, err = run_cli('-c', code, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
  assert rc == 0 and out.strip() == 'False', err[-2000:]


def test_only_the_zoos_info_records_pass():
  keep = cli.ZooInfoOnly()

  def record(path, level):
    return logging.LogRecord('absl', level, path, 1, 'message', (), None)

  zoo_file = os.path.join(ROOT, 'zoo', 'trainer.py')
  orbax_file = os.path.join(os.path.dirname(logging.__file__), 'site-packages', 'orbax', 'checkpoint_manager.py')
  assert keep.filter(record(zoo_file, logging.INFO)) and keep.filter(record(orbax_file, logging.WARNING))
  assert not keep.filter(record(orbax_file, logging.INFO)) and not keep.filter(record(orbax_file, logging.DEBUG))
  project_file = os.path.join(ROOT, 'projects', 'pnp', 'experiment.py')  # run as python -m projects.pnp.experiment
  assert not keep.filter(record(project_file, logging.INFO))
  assert cli.ZooInfoOnly((os.path.join(ROOT, 'projects') + os.sep,)).filter(record(project_file, logging.INFO))


BENCHMARK = ['--model=resnetrs50', '--image_size=32', '--batch_size=1', '--steps=1', '--warmup=0',
             '--model_kwargs={"stage_depths": [1, 1, 1, 1], "width_multiplier": 0.125}']


def one_by_one_convolutions(dump_dir) -> int:
  """1x1 convolutions left in the optimised HLO that XLA dumped: FAST_CPU_FLAGS turn them into dots."""
  text = ''.join(open(f).read() for f in glob.glob(os.path.join(dump_dir, '*after_optimizations.txt')))
  assert 'convolution(' in text  # the 3x3 ones remain: the dump is the model's
  return len(re.findall(r'convolution\(.*window=\{size=1x1[ }]', text))


@pytest.mark.slow
def test_benchmark_run_directly_gets_the_fast_flags_unless_the_user_set_them(tmp_path):
  """`python benchmark.py` sets the flag itself, and XLA applies it (set after jax was imported, before its backend
  started): the compiled model has no 1x1 convolution left. A user's own value of the flag (zoo-benchmark) wins."""
  own = ' --xla_cpu_experimental_ynn_fusion_type=individual_convolution'
  for script, user_flag in (('benchmark.py', ''), ('zoo-benchmark', own)):
    dump = tmp_path / script
    flags = f'--xla_force_host_platform_device_count=1 --xla_dump_to={dump}{user_flag}'
    code, out, err = run_cli(script, *BENCHMARK, env=dict(os.environ, XLA_FLAGS=flags))
    assert code == 0, err[-2000:]
    assert json.loads(out)['xla_flags'] == (flags if user_flag else f'{flags} {FAST}')
    assert (one_by_one_convolutions(dump) > 0) == bool(user_flag)


def foreign_info_records(text: str) -> list[str]:
  """The INFO records in `text` (absl's format, Python's or C++'s) that are not a logging call of the zoo."""
  zoo_files = glob.glob(os.path.join(ROOT, 'zoo', '**', '*.py'), recursive=True)
  foreign = []
  for name, line in re.findall(r'^I\d{4} [\d:.]+ +\d+ ([^:\s]+):(\d+)\] ', text, re.M):
    sources = [open(p).read().splitlines() for p in zoo_files if os.path.basename(p) == name]
    if not any('logging.' in lines[int(line) - 1] for lines in sources if len(lines) >= int(line)):
      foreign.append(f'{name}:{line}')
  return foreign


@pytest.mark.slow
def test_console_of_a_training_run(straight_run):
  """The default console of train.py (conftest's straight_run: 16 steps, a log line each, a checkpoint every 2, the
  final eval): every INFO record, Python's or C++'s (absl's format both), is a logging call of the zoo, and each
  step, the eval and each checkpoint saved has its line. The full config is in the workdir."""
  text = open(f'{straight_run}.log').read()
  assert foreign_info_records(text) == []
  assert not re.search(r'^\d{4}-\d\d-\d\d [\d:.]+: I ', text, re.M), 'an INFO record of TensorFlow\'s older format'
  assert [int(s) for s in re.findall(rf'\] step (\d+)/{STEPS}  loss', text)] == list(range(1, STEPS + 1))
  assert f'eval (EMA) at step {STEPS}:' in text
  assert [int(s) for s in re.findall(r'\] saving checkpoint (\d+) to ', text)] == list(range(2, STEPS + 1, 2))
  [overrides] = re.findall(r'\] config configs/quickstart.py, overrides: (.*) \(all of it in', text)
  assert 'batch_size=32' in overrides and f'num_train_steps={STEPS}' in overrides
  config = json.load(open(os.path.join(straight_run, 'config.json')))
  assert (config['batch_size'], config['num_train_steps'], config['optimizer']) == (32, STEPS, 'adamw')


@pytest.mark.slow
def test_verbosity_one_shows_the_libraries_info(tmp_path, tfds_dir):
  """absl's -v 1 lets other libraries' INFO records through (orbax's, jax's, ... before the error)."""
  args = ['--config=configs/quickstart.py', f'--workdir={tmp_path}', f'--config.data_dir={tfds_dir}',
          '--config.batch_size=12']
  for verbosity, shown in (([], False), (['-v', '1'], True)):
    code, _, err = run_cli('zoo-train', *args, *verbosity, devices=8, timeout=120)
    assert code != 0 and 'error: batch_size=12 is not divisible' in err, err[-2000:]
    assert bool(foreign_info_records(err)) is shown, err[-3000:]


NO_TENSORFLOW = '''
import sys
import zoo.commands.benchmark, zoo.commands.data, zoo.commands.evaluate, zoo.commands.export, zoo.commands.train
from tests.helpers import tiny_config
from zoo.tasks import get_task
task = get_task(tiny_config(sys.argv[1], batch_size=8))
task.check_data()
batch, held_out = next(task.train_batches(0)), next(iter(task.eval_batches(8)))
print(sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')))
'''


def test_the_commands_and_the_classification_input_import_no_tensorflow(tfds_dir):
  """TensorFlow is installed here (the parity tests use it), so this sees any import of it: the commands' modules,
  opening mnist5k, reading a training and an evaluation batch load none of it."""
  rc, out, err = run_cli('-c', NO_TENSORFLOW, tfds_dir, timeout=120)
  assert rc == 0, err[-3000:]
  assert out.splitlines()[-1] == '[]'
