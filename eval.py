"""Evaluates a checkpoint: `python eval.py --config=... --workdir=DIR [--use_ema=false] [--image_size=N]`.

Reads the latest checkpoint of DIR (trained by train.py or written by `python -m zoo.convert`) and ends by printing
one JSON line of its metrics.
"""
import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from zoo.cli import parse_flags
from zoo.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (the one the model was trained with).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory with checkpoints/.')
flags.DEFINE_bool('use_ema', True, 'Evaluate the EMA weights (default) or the raw ones.')
flags.DEFINE_integer('image_size', 0, 'Evaluation resolution; 0 uses the config (eval_image_size or image_size).')
flags.DEFINE_integer('step', -1, 'Checkpoint step; -1 takes the latest.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from zoo import evaluation  # imported after flag parsing: jax reads XLA_FLAGS at import
  try:
    metrics = evaluation.evaluate_checkpoint(FLAGS.config, FLAGS.workdir, use_ema=FLAGS.use_ema,
                                             image_size=FLAGS.image_size or None,
                                             step=None if FLAGS.step < 0 else FLAGS.step)
  except UserError as e:
    sys.exit(f'error: {e}')
  logging.info('Eval: %s', metrics)
  print(json.dumps(metrics))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
