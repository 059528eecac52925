"""Evaluates a checkpoint: `zoo-eval --config=... --workdir=DIR [--use_ema=false] [--image_size=N] [--step=N]`.

Reads the checkpoint of DIR (trained by zoo-train or written by zoo-convert) and ends by printing one JSON line of
its metrics on stdout.
"""
import json

from absl import flags, logging
from ml_collections import config_flags

from zoo import cli
from zoo.errors import UserError

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Experiment config file (the one the model was trained with).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory with checkpoints/.')
  flags.DEFINE_bool('use_ema', True, 'Evaluate the EMA weights (default) or the raw ones.')
  flags.DEFINE_integer('image_size', 0, 'Evaluation resolution; 0 uses the config (eval_image_size or image_size).')
  flags.DEFINE_integer('step', -1, 'Checkpoint step; -1 takes the latest.')
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  from zoo import evaluation
  metrics = evaluation.evaluate_checkpoint(FLAGS.config, FLAGS.workdir, use_ema=FLAGS.use_ema,
                                           image_size=FLAGS.image_size or None,
                                           step=None if FLAGS.step < 0 else FLAGS.step)
  logging.info('eval: %s', metrics)
  print(json.dumps(metrics))


def run() -> None:
  define_flags()
  cli.run(main, __doc__)
