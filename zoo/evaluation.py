"""Evaluation of a saved checkpoint (EMA or raw weights, at any resolution)."""
import dataclasses

import jax
from absl import logging

from zoo import checkpoint, ema, finetune
from zoo.errors import UserError
from zoo.parallel import DataParallel, check_batch_size
from zoo.registry import held_classes
from zoo.tasks import get_task
from zoo.trainer import evaluate


def check_classes(model: str, variables: dict, classes: int | None, source: str, init_from: str) -> None:
  """A classifier head of another size than the data's classes is one line, before anything compiles; `source`
  names the weights, `init_from` how a fine-tuning run starts from them."""
  held = held_classes(model, variables)
  if classes is None or held is None:
    return
  if held != classes:
    raise UserError(f'{source} holds a {model} with {held} classes but the dataset has {classes}: map its folders to '
                    'the weights\' classes with a class index (--class_index=FILE, or =imagenet for ImageNet synset '
                    f'folders), or fine-tune it first (--config.init_from={init_from} re-initialises the head)')


def evaluate_pretrained(source: str, dataset: str, data_dir: str | None, split: str, *, batch_size: int = 64,
                        class_index: str | None = None, model: str | None = None,
                        model_kwargs: dict | None = None) -> dict:
  """The eval metrics of published weights (`source` as zoo.load_pretrained reads it; `model` for a weights file,
  `model_kwargs` create_model's overrides, e.g. dtype)
  on `split` of `dataset`, with the weights' own evaluation input (pretrained.Weights.preprocessing); image folders
  map their class folders onto the weights' classes through `class_index` (zoo.data.sources.read_class_index).
  Adds 'source' and 'image_size'."""
  from zoo import pretrained
  weights = pretrained.resolve(source, model)
  weights = dataclasses.replace(weights, overrides={**weights.overrides, **(model_kwargs or {})})
  config = pretrained.eval_config(weights, dataset, data_dir, split, batch_size, class_index)
  dp = DataParallel(config.parallelism)
  local_batch = check_batch_size(config.batch_size)
  task = get_task(config)
  task.check_data(training=False)
  variables = pretrained.load(weights)
  init_from = source if source.startswith(pretrained.HUB_PREFIX) else f'{finetune.PRETRAINED}{source}'
  check_classes(weights.model, variables, task.num_classes, source, init_from)
  metrics = evaluate(task, dp, dp.put_state(variables), local_batch)
  return {**metrics, 'source': source, 'image_size': config.input.image_size}


def evaluate_checkpoint(config, workdir: str, *, use_ema: bool = True, image_size: int | None = None,
                        step: int | None = None) -> dict:
  """Returns the eval metrics of `workdir`'s checkpoint at `step` (default: the latest), plus 'step'."""
  if not checkpoint.has_checkpoints(workdir):
    raise UserError(f'no checkpoints in {workdir}: train there first (train.py) or convert weights '
                    '(python -m zoo.convert)')
  dp = DataParallel(config.parallelism)
  local_batch = check_batch_size(config.batch_size)
  task = get_task(config)
  task.check_data(training=False)  # the training split need not exist, nor hold a batch
  with checkpoint.manager(workdir, read_only=True) as mngr:
    steps = mngr.all_steps()
    if not steps or (step is not None and step not in steps):
      raise UserError(f'checkpoint step {step} not in {workdir} (available: {sorted(steps)})')
    step = max(steps) if step is None else step
    saved = checkpoint.restore_config(mngr, step).get('model')
    if saved not in (None, config.model):
      raise UserError(f'{workdir} holds a {saved} checkpoint but the config builds {config.model}; '
                      f'pass --config.model={saved} or the config it was trained with')
    state = checkpoint.restore_state(mngr, step)
  variables, averaged = ema.inference_variables(state, use_ema)
  check_classes(config.model, variables, getattr(task, 'num_classes', None), workdir, workdir)
  if use_ema and not averaged:
    logging.info('the checkpoint has no EMA weights (converted weights, or ema_decay=0): evaluating its weights')
  metrics = evaluate(task, dp, dp.put_state(jax.device_get(variables)), local_batch, image_size)
  return {**metrics, 'step': int(step), 'ema': averaged}
