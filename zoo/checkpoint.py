"""Orbax checkpoints of the zoo: one layout for training, evaluation and converted weights.

A workdir holds `checkpoints/<step>/{state,config}`: `state` is the train state as a plain nested dict
(`flax.serialization.to_state_dict`), `config` the ml_collections config as JSON; and `config.json`, the config of
the latest start, for people. Converted pretrained weights use
the same layout with only `params` / `batch_stats`, so `eval.py` reads both.
"""
import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from zoo import ema
from zoo.errors import UserError


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
  """The workdir as a path that local folders and buckets (gs://, what a TPU slice's hosts share) both take: a local
  one absolute, as orbax needs, a URL as it is (os.path would make gs://b/r a local ./gs:/b/r)."""
  workdir = os.fspath(workdir)
  return epath.Path(workdir if '://' in workdir else os.path.abspath(workdir))


def checkpoint_dir(workdir: str | os.PathLike) -> str:
  return str(workdir_path(workdir) / 'checkpoints')


def has_checkpoints(workdir: str | os.PathLike) -> bool:
  """Whether `workdir` has a checkpoints folder (local or in a bucket)."""
  return epath.Path(checkpoint_dir(workdir)).is_dir()


def manager(workdir: str, *, max_to_keep: int | None = 3, async_save: bool = True,
            read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
                                         create=not read_only, read_only=read_only)
  # Handlers named, not inferred on first use, so that a saved state's structure can be read before restoring it.
  handlers = {'state': ocp.StandardCheckpointHandler(), 'config': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_handlers=handlers)


def write_config(workdir: str, config) -> None:
  """Writes the ml_collections `config` to <workdir>/config.json, replacing the last start's."""
  (workdir_path(workdir) / 'config.json').write_text(config.to_json_best_effort(indent=1, sort_keys=True) + '\n')


def save(mngr: ocp.CheckpointManager, step: int, state: dict, config: dict) -> None:
  """Saves `state` (a dict of nested dicts of arrays; its None entries, such as the EMA of a run without one, are
  not written) and `config` (JSON-able dict); asynchronous if the manager is. Logs one line (orbax's own records are
  below the console's default verbosity, zoo/cli.py)."""
  state = {k: v for k, v in state.items() if v is not None}
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)),
            force=True)
  logging.info('saving checkpoint %d to %s', step, mngr.directory / str(step))


def restore_state(mngr: ocp.CheckpointManager, step: int, target: dict | None = None) -> dict:
  """Restores the state of `step` as saved (for evaluation), or onto `target`'s structure (for resuming). With a
  target, the result holds the target's entries that are not None and that the checkpoint has: a saved entry that
  the target does not want is not read (checkpoints of `ema_decay=0` runs written before the EMA became optional hold
  an EMA), and one that the checkpoint lacks is left to the caller."""
  if target is None:
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  saved = mngr.item_metadata(step)['state']
  wanted = {k for k, v in target.items() if v is not None and k in saved}
  unwanted = {k: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved[k]) for k in saved
              if k not in wanted}  # the restore reads every saved entry; these are dropped after
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(
      {**{k: target[k] for k in wanted}, **unwanted})))['state']
  return {k: restored[k] for k in wanted}


def restore_config(mngr: ocp.CheckpointManager, step: int) -> dict:
  return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']


def restore_newest(mngr: ocp.CheckpointManager, workdir: str, target: dict,
                   check_config) -> tuple[int, dict] | None:
  """(step, state) of the newest checkpoint that reads back onto `target`, or None in a workdir without any.

  Orbax writes a step into a temporary directory and renames it when complete, so a save cut short by a kill never
  shows up as a step. A step whose files were damaged later (a full disk, a copy cut short) does: its restore fails,
  and the one before it is used. The damaged steps are moved to <workdir>/unreadable_checkpoints/ (by process 0 of
  a multi-process run; every process skips them), never deleted, and logged. `check_config(saved_config)` raises
  for a checkpoint of another run, which is not damage. If no step reads back, nothing is moved and the error names
  the newest failure.
  """
  failed = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      config = restore_config(mngr, step)
    except Exception as e:  # noqa: BLE001  (damage shows as any of orbax's / tensorstore's errors)
      failed.append((step, e))
      continue
    check_config(config)
    try:
      state = restore_state(mngr, step, target)
    except Exception as e:  # noqa: BLE001
      failed.append((step, e))
      continue
    for bad, error in failed:
      aside = _move_aside(workdir, bad) if jax.process_index() == 0 else 'unreadable_checkpoints/ by process 0'
      logging.warning('checkpoint %d cannot be read (%s: %s); moved to %s; resuming from step %d instead', bad,
                      type(error).__name__, str(error).splitlines()[0][:300], aside, step)
    if failed:
      mngr.reload()
    return step, state
  if failed:
    step, error = failed[0]
    raise UserError(f'no checkpoint in {checkpoint_dir(workdir)} reads back (step {step}: {type(error).__name__}: '
                    f'{str(error).splitlines()[0][:300]}); nothing was moved or deleted')
  return None


def _move_aside(workdir: str, step: int) -> str:
  """Moves checkpoint `step` to <workdir>/unreadable_checkpoints/<step>[.N] (a new name if that exists)."""
  aside_root = workdir_path(workdir) / 'unreadable_checkpoints'
  aside_root.mkdir(parents=True, exist_ok=True)
  aside, n = aside_root / str(step), 1
  while aside.exists():
    aside, n = aside_root / f'{step}.{n}', n + 1
  (epath.Path(checkpoint_dir(workdir)) / str(step)).rename(aside)
  return str(aside)


def load_variables(workdir: str, task: str, step: int | None = None, train_hint: str = '') -> tuple[dict, dict]:
  """(config, {'params', 'batch_stats'}) of a `task` workdir at `step` (default: the latest), EMA weights when it has
  them, on the host: what the inference tools (denoisers for PnP, the watermark API, the experiments) start from.
  A workdir without checkpoints, or of another task, is a UserError; `train_hint` says how to train one."""
  return load_inference_variables(workdir, task, step, train_hint)[:2]


def load_inference_variables(workdir: str, task: str, step: int | None = None,
                             train_hint: str = '') -> tuple[dict, dict, bool]:
  """load_variables, and whether the variables are the EMA (zoo.ema.inference_variables)."""
  hint = f': train one there first ({train_hint})' if train_hint else ''
  missing = UserError(f'no checkpoints in {workdir}{hint}')
  if not has_checkpoints(workdir):
    raise missing
  with manager(workdir, read_only=True) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise missing
    config = restore_config(mngr, step)
    state = restore_state(mngr, step)
  if config.get('task') != task:
    raise UserError(f'{workdir} holds a {config.get("task")} checkpoint of {config.get("model")}, not {task}')
  variables, is_ema = ema.inference_variables(state)
  return config, jax.device_get(variables), is_ema


def save_pretrained(out_dir: str, variables: dict, config: dict) -> str:
  """Writes converted variables ({'params', 'batch_stats'}) as a step-0 checkpoint that `eval.py` evaluates.

  Refuses a directory that already holds checkpoints: nothing the user had is overwritten.
  """
  ckpt = epath.Path(checkpoint_dir(out_dir))
  if ckpt.exists() and any(ckpt.iterdir()):
    raise FileExistsError(f'{ckpt} already holds checkpoints; choose another --out directory')
  mngr = manager(out_dir, async_save=False)
  save(mngr, 0, dict(variables), config)
  mngr.wait_until_finished()
  mngr.close()
  return str(ckpt)
