"""The task contract (zoo/tasks/base.py): every task states all of it, building one reads no data, and a task that
evaluates at one size only says so."""
import importlib

import numpy as np
import pytest

from configs import denoiser, faceguard
from tests.helpers import tiny_config
from zoo.errors import DatasetError
from zoo.errors import UserError
from zoo.tasks import TASKS, get_task
from zoo.tasks.base import Task
from zoo.tasks.classification import ClassificationTask


@pytest.mark.parametrize('name', sorted(TASKS))
def test_every_task_implements_the_whole_contract(name):
  module, cls = TASKS[name].split('.')
  task_cls = getattr(importlib.import_module(f'zoo.tasks.{module}'), cls)
  assert issubclass(task_cls, Task) and not task_cls.__abstractmethods__


def test_building_a_task_reads_no_data(tmp_path):
  missing = str(tmp_path / 'nowhere')
  folder = tiny_config(missing, dataset='image_folder')
  task = ClassificationTask(folder, num_classes=10)
  assert task.model.num_classes == 10  # the model and loss need no data set
  with pytest.raises(DatasetError, match='image_folder needs --config.data_dir=ROOT'):
    get_task(folder).check_data()
  pnp = denoiser.get_config('simplecnn-real-15')
  pnp.dataset = 'pnp'
  task = get_task(pnp)
  with pytest.raises(DatasetError, match="dataset 'pnp' needs --config.data_dir"):
    task.check_data()


@pytest.mark.parametrize('variant', ['', 'autoencoder'])
def test_face_tasks_evaluate_at_their_training_size_only(variant):
  c = faceguard.get_config(variant)
  c.input.image_size, c.input.photos = 32, False
  task = get_task(c)
  with pytest.raises(UserError, match='the .* task evaluates at its input.image_size=32 only, not at image_size=48'):
    task.eval_batches(8, image_size=48)
  batches = list(task.eval_batches(8, image_size=32))  # the training size itself is no other size
  assert sum(b['mask'].sum() for b in batches) == 20 and batches[0]['image'].shape == (8, 32, 32, 3)
  same = list(task.eval_batches(8))
  np.testing.assert_array_equal(np.concatenate([b['image'] for b in same]),
                                np.concatenate([b['image'] for b in batches]))
