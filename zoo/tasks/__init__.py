"""Tasks tell the trainer what to learn: the model, the input, the loss and the metrics.

The trainer (zoo/trainer.py) knows no model; it asks `get_task(config)` for an object with
`model`, `train_batches`, `eval_batches`, `num_eval_steps`, `train_loss`, `eval_outputs`, `TrainMetrics`,
`EvalMetrics`, `init_inputs`, `steps_per_epoch` and `weight_decay_mask`.
"""
from zoo.errors import UserError
from zoo.tasks.autoencoding import AutoencodingTask
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.denoising import DenoisingTask
from zoo.tasks.reconstruction import ReconstructionTask
from zoo.tasks.watermarking import WatermarkingTask

TASKS = {'classification': ClassificationTask, 'denoising': DenoisingTask, 'reconstruction': ReconstructionTask,
         'watermarking': WatermarkingTask, 'autoencoding': AutoencodingTask}


def get_task(config):
  if config.task not in TASKS:
    raise UserError(f'Unknown task {config.task!r}; valid tasks: {", ".join(sorted(TASKS))}')
  return TASKS[config.task](config)
