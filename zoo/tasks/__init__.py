"""Tasks tell the trainer what to learn: the model, the input, the loss and the metrics.

The trainer (zoo/trainer.py) knows no model; it asks `get_task(config)` for the config's `Task` (zoo/tasks/base.py
states the contract; the in-memory tasks share zoo/tasks/arrays.py).
"""
import importlib

from zoo.errors import UserError
from zoo.tasks.base import Task

# Imported when asked for: a run imports only its own task's model and input code.
TASKS = {'classification': 'classification.ClassificationTask', 'denoising': 'denoising.DenoisingTask',
         'reconstruction': 'reconstruction.ReconstructionTask', 'watermarking': 'watermarking.WatermarkingTask',
         'autoencoding': 'autoencoding.AutoencodingTask'}


def get_task(config) -> Task:
  """The task named by `config.task`, built from `config` (no data read yet: see `Task.check_data`)."""
  if config.task not in TASKS:
    raise UserError(f'Unknown task {config.task!r}; valid tasks: {", ".join(sorted(TASKS))}')
  module, cls = TASKS[config.task].split('.')
  return getattr(importlib.import_module(f'zoo.tasks.{module}'), cls)(config)
