"""Tasks tell the trainer what to learn: the model, the input, the loss and the metrics.

The trainer (zoo/trainer.py) knows no model; it asks `get_task(config)` for an object with
`model`, `train_batches`, `eval_batches`, `num_eval_steps`, `train_loss`, `eval_outputs`, `TrainMetrics`,
`EvalMetrics`, `init_inputs`, `steps_per_epoch` and `weight_decay_mask`.
"""
import importlib

from zoo.errors import UserError

# Imported when asked for: the in-memory tasks' input still runs on tf.data, which a classifier's benchmark or export
# on a machine without TensorFlow never reaches.
TASKS = {'classification': 'classification.ClassificationTask', 'denoising': 'denoising.DenoisingTask',
         'reconstruction': 'reconstruction.ReconstructionTask', 'watermarking': 'watermarking.WatermarkingTask',
         'autoencoding': 'autoencoding.AutoencodingTask'}


def get_task(config):
  if config.task not in TASKS:
    raise UserError(f'Unknown task {config.task!r}; valid tasks: {", ".join(sorted(TASKS))}')
  module, cls = TASKS[config.task].split('.')
  return getattr(importlib.import_module(f'zoo.tasks.{module}'), cls)(config)
