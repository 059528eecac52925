"""Trains a zoo model: `python train.py --config=configs/resnet_rs.py:50-160 --workdir=DIR [--config.key=value]`.

Re-running on an existing workdir resumes from its latest checkpoint. On several hosts every process runs the same
command; `--coordinator_address --num_processes --process_id`, or the cluster's environment, join them
(zoo/distributed.py).
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from zoo import distributed
from zoo.cli import parse_flags
from zoo.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/quickstart.py.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, config and TensorBoard logs go here.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from zoo import trainer  # imported after flag parsing: jax reads XLA_FLAGS at import
  logging.info('Config:\n%s', FLAGS.config)
  try:
    distributed.initialize()
    metrics = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except UserError as e:
    sys.exit(f'error: {e}')
  logging.info('Final eval: %s', metrics)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
