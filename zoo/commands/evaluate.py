"""Evaluates a checkpoint or published weights and ends by printing one JSON line of the metrics on stdout.

  zoo-eval --config=CONFIG --workdir=DIR [--use_ema=false] [--image_size=N] [--step=N]
  zoo-eval --pretrained=resnetrs50 --dataset=image_folder --data_dir=DIR [--split=validation] [--class_index=FILE]

The first reads the checkpoint of DIR (trained by zoo-train or written by zoo-convert) with the config it was trained
with. The second evaluates published weights (a model name, a published tag, hf-hub:ORG/REPO, a hub folder, or a
weights file with --model; see zoo.load_pretrained) with their own evaluation input (resize filter, crop, mean and
std: as timm evaluates them). `--class_index` maps an image folder's class folders onto the weights' classes: a file
with one class per line (its folder name first), or `imagenet` for folders named by ImageNet synsets (n01440764 ...),
whose standard order ships with the zoo. With --config it sets the config's class_index.
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
  flags.DEFINE_string('workdir', None, 'Directory with checkpoints/ (with --config).')
  flags.DEFINE_bool('use_ema', True, 'Evaluate the EMA weights (default) or the raw ones.')
  flags.DEFINE_integer('image_size', 0, 'Evaluation resolution; 0 uses the config (eval_image_size or image_size).')
  flags.DEFINE_integer('step', -1, 'Checkpoint step; -1 takes the latest.')
  flags.DEFINE_string('pretrained', None, 'Published weights instead of a checkpoint: a model name, a published tag, '
                      'hf-hub:ORG/REPO, a hub folder or a weights file (with --model).')
  flags.DEFINE_string('model', None, 'With --pretrained=FILE: the zoo model the weights are of.')
  flags.DEFINE_string('model_kwargs', '{}', 'With --pretrained: create_model\'s overrides as JSON, e.g. '
                      '\'{"dtype": "bfloat16"}\'.')
  flags.DEFINE_string('dataset', 'image_folder', 'With --pretrained: a TFDS dataset prepared as ArrayRecord, or '
                      'image_folder (DATA_DIR/SPLIT/CLASS/IMAGE).')
  flags.DEFINE_string('data_dir', None, 'With --pretrained: the image folder\'s root, or the TFDS data_dir.')
  flags.DEFINE_string('split', 'validation', 'With --pretrained: the split to evaluate.')
  flags.DEFINE_integer('batch_size', 64, 'With --pretrained: the global evaluation batch.')
  flags.DEFINE_string('class_index', None, 'Image folders: their classes in the weights\' order, a file of one class '
                      'per line (folder name first) or "imagenet".')


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  from zoo import evaluation
  if (FLAGS.config is None) == (FLAGS.pretrained is None):
    raise UserError('give one of --config (with --workdir: a checkpoint) and --pretrained (published weights)')
  if FLAGS.pretrained:
    if FLAGS.workdir or FLAGS.image_size or FLAGS.step >= 0:
      raise UserError('--workdir, --image_size and --step are for checkpoints: --pretrained evaluates at the '
                      'weights\' own input')
    metrics = evaluation.evaluate_pretrained(FLAGS.pretrained, FLAGS.dataset, FLAGS.data_dir, FLAGS.split,
                                             batch_size=FLAGS.batch_size, class_index=FLAGS.class_index,
                                             model=FLAGS.model,
                                             model_kwargs=cli.json_object(FLAGS.model_kwargs, '--model_kwargs'))
  else:
    if FLAGS.workdir is None:
      raise UserError('--config needs --workdir, the directory of the checkpoint to evaluate')
    given = [name for name in ('model', 'model_kwargs', 'dataset', 'data_dir', 'split', 'batch_size')
             if FLAGS[name].present]
    if given:
      raise UserError(f'--{given[0]} is for --pretrained; with --config, override the config: --config.KEY=VALUE')
    config = FLAGS.config
    if FLAGS.class_index:
      with config.unlocked():
        config.class_index = FLAGS.class_index
    metrics = evaluation.evaluate_checkpoint(config, FLAGS.workdir, use_ema=FLAGS.use_ema,
                                             image_size=FLAGS.image_size or None,
                                             step=None if FLAGS.step < 0 else FLAGS.step)
  logging.info('eval: %s', metrics)
  print(json.dumps(metrics))


def run() -> None:
  define_flags()
  cli.run(main, __doc__)
