"""The zoo's data-parallel training loop (after flax examples/imagenet): one per-device step, any task.

The task supplies the model, the input, the loss and the metrics; this module supplies the optimiser, the EMA,
data parallelism (pmap or shard_map), checkpoints, logging and evaluation.
"""
import functools
import json
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from absl import logging

from zoo import checkpoint, ema, faults, finetune, summaries
from zoo.errors import Preempted, UserError
from zoo.parallel import AXIS, DataParallel, check_batch_size
from zoo.registry import model_card
from zoo.tasks import get_task


@flax.struct.dataclass
class TrainState:
  """What a checkpoint holds; the EMA fields are None in a run without EMA (`ema_decay=0`, zoo/ema.py)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any = None
  ema_batch_stats: Any = None


def learning_rate_schedule(config, steps_per_epoch: int, total_steps: int):
  """The peak is `learning_rate * batch / lr_base_batch` (the linear-scaling rule's reference batch is a config key
  because recipes quote their peak for different batches: ResNet-RS 0.1 per 256, VOLO 1.6e-3 at 1024).

  'cosine': linear warm-up to the peak, cosine decay to `end_learning_rate`, which the last `cooldown_epochs` keep
  (timm's cooldown). 'step': the peak, times `lr_step_factor` at each of `lr_step_boundaries` (fractions of training;
  DnCNN's Adam recipe divides by 10 half way).
  """
  peak = config.learning_rate * config.batch_size / config.lr_base_batch
  if config.schedule == 'step':
    boundaries = {max(int(f * total_steps), 1): config.lr_step_factor for f in config.lr_step_boundaries}
    return optax.piecewise_constant_schedule(peak, boundaries)
  if config.schedule != 'cosine':
    raise UserError(f"schedule must be 'cosine' or 'step', got {config.schedule!r}")
  decay_end = max(total_steps - int(config.cooldown_epochs * steps_per_epoch), 1)
  warmup = min(int(config.warmup_epochs * steps_per_epoch), decay_end - 1)
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, decay_end, config.end_learning_rate)


def optimizer(config, schedule, decay_mask) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum and L2 regularisation (the ResNet-RS recipe), or AdamW."""
  if config.optimizer == 'sgd':
    # L2 in the loss, as TF1: its gradient wd * w is added before momentum.
    return optax.chain(optax.add_decayed_weights(config.weight_decay, decay_mask),
                       optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
  if config.optimizer == 'adamw':
    return optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2, weight_decay=config.weight_decay,
                       mask=decay_mask)
  raise UserError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")


def train_step(state: TrainState, batch, rng, *, task, tx, decay):
  """One step on one device's share of the batch; gradients are averaged over the 'batch' axis.

  Returns (state, metrics, finite). A step whose mean loss or gradient norm is not finite is rejected: every part of
  the state but the step counter stays as it was (the loop counts and logs it, see zoo/faults.py). Every device
  takes the same decision, since both values are averaged over the devices."""
  rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), jax.lax.axis_index(AXIS))

  def loss_fn(params):
    return task.train_loss(params, state.batch_stats, batch, rng)

  (loss, (batch_stats, outputs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
  if state.ema_params is not None:
    averages = ema.update(state.ema_params, state.ema_batch_stats, params, batch_stats, ema.decay_at(decay, state.step))
    new_state = new_state.replace(ema_params=averages[0], ema_batch_stats=averages[1])
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(jax.lax.pmean(loss, AXIS)) & jnp.isfinite(grad_norm)
  new_state = jax.tree.map(functools.partial(jnp.where, finite), new_state, state).replace(step=state.step + 1)
  metrics = task.TrainMetrics.gather_from_model_output(axis_name=AXIS, loss=loss, grad_norm=grad_norm, **outputs)
  return new_state, metrics, finite


def eval_step(variables, batch, *, task):
  outputs = task.eval_outputs(variables['params'], variables['batch_stats'], batch)
  return task.EvalMetrics.gather_from_model_output(axis_name=AXIS, **outputs)


# XLA options for a function that runs once, such as the initialisation: the backend's expensive optimisation passes
# take longer than they save (a 1-1-1-1 ResNet-RS's init compiled in 13 s with them and 3 s without, on XLA:CPU).
# Compiled as one function, the optimiser's zero state is not built leaf by leaf (one small compile each).
RUN_ONCE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def initial_state(task, tx, rng, abstract: bool = False) -> TrainState:
  """Step 0: the model's initial variables, the optimiser's state, and the EMA on them if the task's config keeps
  one (`ema_decay` > 0). With `abstract`, only its shapes and dtypes (jax.ShapeDtypeStruct leaves), computed without
  compiling anything: what lowering a step for its cost analysis needs."""
  def fresh(key):
    variables = task.model.init(key, task.init_inputs(), train=False)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(variables['params']))

  keep_ema = task.config.ema_decay > 0
  if abstract:
    return jax.eval_shape(lambda key: with_ema(fresh(key)) if keep_ema else fresh(key), rng)
  state = jax.jit(fresh).lower(rng).compile(compiler_options=RUN_ONCE)(rng)
  return with_ema(state) if keep_ema else state


def with_ema(state: TrainState) -> TrainState:
  """`state` with its EMA restarted at its weights."""
  ema_params, ema_batch_stats = ema.start(state.params, state.batch_stats)
  return state.replace(ema_params=ema_params, ema_batch_stats=ema_batch_stats)


def total_steps(config, steps_per_epoch: int) -> int:
  return config.num_train_steps if config.num_train_steps > 0 else int(config.num_epochs * steps_per_epoch)


def _merge(metrics_list):
  metrics_list = jax.device_get(metrics_list)
  merged = functools.reduce(lambda a, b: a.merge(b), metrics_list)
  return {k: float(v) for k, v in merged.compute().items()}


def compile_eval_step(task, dp: DataParallel):
  return dp.compile(functools.partial(eval_step, task=task), num_sharded=1, donate_state=False)


def evaluate(task, dp: DataParallel, variables, local_batch: int, image_size: int | None = None,
             step_fn=None) -> dict:
  """Metrics over the whole eval split; `variables` are on the devices. Pass `step_fn` to reuse a compiled step."""
  step_fn = step_fn or compile_eval_step(task, dp)
  results = []
  for batch in dp.prefetch(task.eval_batches(local_batch, image_size)):
    if results:  # one step in flight: XLA:CPU's collectives stall when steps queue (see train_and_evaluate)
      jax.block_until_ready(results[-1])
    results.append(dp.get_metrics(step_fn(variables, batch)))
  return _merge(results)


def check_resume(saved: dict, config) -> None:
  """Refuses to resume a workdir trained with another model: its checkpoints would not fit."""
  for key in ('model', 'model_kwargs', 'task'):
    if key in saved and json.loads(json.dumps(config.to_dict()[key])) != saved[key]:
      raise UserError(f'workdir holds checkpoints of {key}={saved[key]!r}, not {config.to_dict()[key]!r}; '
                       'use another --workdir')


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final eval metrics."""
  dp = DataParallel(config.parallelism, donate=config.donate_state)
  local_batch = check_batch_size(config.batch_size)
  task = get_task(config)
  task.check_data()
  steps_per_epoch = max(task.steps_per_epoch, 1)
  num_steps = total_steps(config, steps_per_epoch)
  schedule = learning_rate_schedule(config, steps_per_epoch, num_steps)
  tx = optimizer(config, schedule, task.weight_decay_mask)

  out_of_memory = faults.out_of_memory_explained(config.model, config.batch_size, config.model_kwargs.to_dict(),
                                                 config.input.get('image_size'))
  with checkpoint.manager(workdir, max_to_keep=config.keep_checkpoints) as mngr, out_of_memory:
    state = restore_or_init(task, tx, mngr, config, workdir)
    start = int(state.step)
    writer = summaries.EventWriter(workdir, active=jax.process_index() == 0)
    if start == 0:
      writer.write_hparams(flatten(config.to_dict()))
    if jax.process_index() == 0:
      checkpoint.write_config(workdir, config)
    train_fn = dp.compile(functools.partial(train_step, task=task, tx=tx, decay=config.ema_decay),
                          num_sharded=1, num_replicated=1)
    eval_fn = compile_eval_step(task, dp)
    profiled = Profile(workdir, max(PROFILE_FIRST_STEP, start + 2), num_steps) if config.profile else None
    state = dp.put_state(state)
    rng = jax.random.key(config.seed + 1)
    source = task.train_batches(start)
    batches = dp.prefetch(source)
    pending, t0, step0, eval_metrics = [], time.perf_counter(), start, {}
    # XLA:CPU runs every device's share of a step on one thread pool; with several steps queued, their collectives
    # can wait on each other for ever (seen on 8 host devices). There the next step starts when the last ended;
    # accelerators queue steps freely.
    one_in_flight = jax.default_backend() == 'cpu'
    save = functools.partial(_save, mngr, dp, config)
    # Accelerators read each step's verdict one step late (zoo/faults.py), so that reading it does not wait for the
    # step just queued.
    late = not one_in_flight if config.late_verdict is None else config.late_verdict
    rejected = faults.NonFiniteSteps(config.max_nonfinite_steps, late)
    learning_rate = jax.jit(schedule)  # for the log: one compile, not one per operation of the schedule
    with faults.PreemptionNotice() as preemption:
      for step in range(start + 1, num_steps + 1):
        state, metrics, finite = train_fn(state, next(batches), rng)
        pending.append(dp.get_metrics(metrics))
        if one_in_flight:
          jax.block_until_ready(pending[-1])
        if rejected.add(step, dp.get_metrics(finite)):
          save(step, state, wait=True)
          raise UserError(rejected.message(step, workdir))
        if profiled:
          profiled.after(step, state)
        if step % config.log_every_steps == 0 or step == num_steps:
          rate = (step - step0) / (time.perf_counter() - t0)
          report_train(writer, step, num_steps, _merge(pending), float(learning_rate(step - 1)), rate,
                       config.batch_size, rejected.total)
          pending, t0, step0 = [], time.perf_counter(), step
        if step % config.eval_every_steps == 0 or step == num_steps:
          variables, averaged = ema.inference_variables(flax.serialization.to_state_dict(state))
          eval_metrics = evaluate(task, dp, variables, local_batch, step_fn=eval_fn)
          writer.write_scalars(step, {f'eval/{k}': v for k, v in eval_metrics.items()})
          logging.info('eval (%s) at step %d: %s', 'EMA' if averaged else 'trained weights', step, eval_metrics)
          t0 = time.perf_counter()
        saved = step % config.checkpoint_every_steps == 0 or step == num_steps
        if saved:
          save(step, state)
        if preemption.reached(step):
          if not saved:
            save(step, state)
          mngr.wait_until_finished()
          writer.flush()
          logging.warning('%s received: stopped after step %d with its checkpoint written; run the same command '
                          'to continue', preemption.received, step)
          raise Preempted(0)
    batches.close()  # stops the input pipeline now rather than whenever it is collected
    if hasattr(source, 'close'):  # grain's iterators: their threads, worker processes and shared memory
      source.close()
    if rejected.finish():  # the last step's verdict, when read late; its state is saved (step == num_steps)
      mngr.wait_until_finished()
      raise UserError(rejected.message(num_steps, workdir))
    mngr.wait_until_finished()
    writer.close()
    # The run's last line says it is done (zoo-launch tpu --watch reads it), also when it resumed at the last step.
    logging.info('finished at step %d/%d', num_steps, num_steps)
    return eval_metrics


def _save(mngr, dp: DataParallel, config, step: int, state, wait: bool = False) -> None:
  checkpoint.save(mngr, step, flax.serialization.to_state_dict(dp.get_state(state)), config.to_dict())
  if wait:
    mngr.wait_until_finished()


def train_unless_done(config, workdir: str, matched_keys=()) -> None:
  """Trains `config` in `workdir` (resuming) unless its latest checkpoint already reached config.num_train_steps:
  how the experiment scripts reuse what an earlier run trained. A workdir whose saved config differs from `config`
  at one of `matched_keys` (paths such as ('input', 'image_size')) is refused, not trained over."""
  if checkpoint.has_checkpoints(workdir):
    with checkpoint.manager(workdir, read_only=True) as mngr:
      latest = mngr.latest_step()
      stored = checkpoint.restore_config(mngr, latest) if latest is not None else None
    if stored is not None:
      differ = [f'{".".join(k)}={_lookup(stored, k)!r}, wanted {_lookup(config.to_dict(), k)!r}'
                for k in matched_keys if _lookup(stored, k) != _lookup(config.to_dict(), k)]
      if differ:
        raise UserError(f'{workdir} holds another run ({"; ".join(differ)}); pass another workdir')
      if latest >= config.num_train_steps:
        return
  logging.info('training %s in %s to step %d', config.model, workdir, config.num_train_steps)
  train_and_evaluate(config, workdir)


def _lookup(config: dict, path):
  for key in path:
    config = config.get(key) if isinstance(config, dict) else None
  return config


def restore_or_init(task, tx, mngr, config, workdir: str) -> TrainState:
  """The newest readable checkpoint's state when the workdir has one (a host copy, not yet on devices; unreadable
  newer ones are moved aside, zoo/checkpoint.py), else a fresh state, whose weights come from `config.init_from`
  when set (zoo/finetune.py; ignored on resuming: the workdir's own checkpoint already started from them)."""
  state = initial_state(task, tx, jax.random.key(config.seed))
  target = flax.serialization.to_state_dict(jax.device_get(state))
  found = checkpoint.restore_newest(mngr, workdir, target, lambda saved: check_resume(saved, config))
  if found is None:
    return init_from(state, tx, config, model_card(config.model).classifier) if config.init_from else state
  step, saved = found
  logging.info('Resuming from checkpoint step %d', step)
  # The EMA as the run keeps it: a checkpoint's EMA that the run does not keep was not read (zoo/checkpoint.py), one
  # that the checkpoint lacks (trained with ema_decay=0) restarts at the weights.
  bare = state.replace(ema_params=None, ema_batch_stats=None)
  restored = flax.serialization.from_state_dict(bare, {**dict.fromkeys(target), **saved})
  if state.ema_params is not None and restored.ema_params is None:
    logging.warning('checkpoint %d holds no EMA (trained with ema_decay=0): the EMA starts at its weights', step)
    return with_ema(restored)
  return restored


def init_from(state: TrainState, tx, config, classifier: tuple[str, ...]) -> TrainState:
  """`state` with the weights of `config.init_from` (adapted to the model, whose classifier heads are
  `classifier`), a fresh optimiser state, and the EMA on them where the run keeps one."""
  params, batch_stats = finetune.load(config.init_from, config.model, dict(config.model_kwargs))
  params = finetune.adapt(params, state.params, classifier, 'params')
  batch_stats = finetune.adapt(batch_stats, state.batch_stats, classifier, 'batch_stats')
  state = state.replace(params=params, batch_stats=batch_stats, opt_state=tx.init(params))
  return with_ema(state) if state.ema_params is not None else state


# A profiled run (config.profile) traces steps 10-14, or the 5 steps after the first when it resumes past step 9:
# the first steps compile and warm up.
PROFILE_FIRST_STEP, PROFILE_STEPS = 10, 5


class Profile:
  """A jax.profiler trace of the steps [first, first + PROFILE_STEPS) (those up to `num_steps`), written to
  LOGDIR/plugins/profile/ for TensorBoard's profile tab or XProf. `after(step, state)` is called after each step;
  the trace starts and stops between steps, once the state is ready, so it holds whole steps."""

  def __init__(self, logdir: str, first: int, num_steps: int):
    self.logdir, self.first, self.last = logdir, first, min(first + PROFILE_STEPS - 1, num_steps)

  def after(self, step: int, state) -> None:
    if step == self.first - 1 and self.first <= self.last:
      jax.block_until_ready(state)
      jax.profiler.start_trace(self.logdir)
    elif step == self.last and step >= self.first:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()


def report_train(writer, step: int, num_steps: int, train: dict, lr: float, rate: float, batch_size: int,
                 rejected: int = 0):
  """Writes train metrics and prints the console line: the task's metrics, learning rate, speed and ETA, and
  the count of steps rejected as non-finite so far when there are any."""
  shown = '  '.join(f'{k} {v:.4g}' for k, v in train.items() if k != 'grad_norm')
  shown += f'  rejected {rejected}' if rejected else ''
  train.update(learning_rate=lr, steps_per_sec=rate, images_per_sec=rate * batch_size, rejected_steps=rejected)
  writer.write_scalars(step, {f'train/{k}': v for k, v in train.items()})
  logging.info('step %d/%d  %s  lr %.4g  |  %.2f steps/s  %.1f img/s  ETA %s', step, num_steps, shown, lr, rate,
               rate * batch_size, _eta((num_steps - step) / max(rate, 1e-9)))


def _eta(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}:{m:02d}:{s:02d}'


def flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out
