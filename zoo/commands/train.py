"""Trains a zoo model: `zoo-train --config=configs/resnet_rs.py:50-160 --workdir=DIR [--config.key=value]`.

Re-running on an existing workdir resumes from its latest checkpoint. The console shows one line per logged step
(loss, speed, ETA), per eval and per checkpoint saved, and the warnings; `-v 1` adds other libraries' records
(zoo/cli.py). The console echoes the `--config.` overrides in one line; the full config is written to
DIR/config.json at each start (zoo/trainer.py), and to TensorBoard's hparams in DIR.

On several hosts every process runs the same command; `--coordinator_address --num_processes --process_id`, or the
cluster's environment, join them (zoo/distributed.py).
"""
import os

from absl import flags, logging
from ml_collections import config_flags

from zoo import cli
from zoo.errors import UserError

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process run started by hand; '
                      'with --num_processes and --process_id.')
  flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run started by hand.')
  flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes - 1.')
  config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/quickstart.py.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Checkpoints, config.json and TensorBoard logs go here.')
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  from zoo import distributed, trainer
  overrides = config_flags.get_override_values(FLAGS['config'])
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info('config %s, overrides: %s (all of it in %s)', config_flags.get_config_filename(FLAGS['config']),
               ' '.join(f'{k}={v}' for k, v in sorted(overrides.items())) or 'none',
               os.path.join(FLAGS.workdir, 'config.json'))
  metrics = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  logging.info('final eval: %s', metrics)


def run() -> None:
  define_flags()
  cli.run(main, __doc__)
