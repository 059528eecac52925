"""Starting a run from another run's weights (`config.init_from`): fine-tuning at a higher resolution, or on
another label set.

The source is a workdir of train.py or a `python -m zoo.convert` output, whose latest checkpoint is read (the EMA
weights when it has them: they are what eval.py evaluated, else the raw ones), or published weights:
'pretrained:NAME' (the weights NAME's card names) or 'hf-hub:ORG/REPO' (zoo.load_pretrained, through the hub's
cache). Every variable of the new model takes
the source's value of the same name. Three cases differ in shape:
  * a position embedding ('pos_embed', (1, h, w, C)) on another token grid is resized bicubically over (h, w), as
    VOLO's and timm's fine-tuning do (jax.image.resize: Keys a=-0.5, where torch's bicubic uses a=-0.75);
  * a classifier head (a top-level module that the model's card lists in `classifier`, zoo.model_card) of another
    shape (another num_classes) keeps the new model's initialisation, with a warning;
  * anything else, and any name that only one side has, is an error that names the variables.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from zoo import checkpoint, ema
from zoo.errors import UserError

MAX_NAMES = 8  # variables named in one error message


PRETRAINED = 'pretrained:'
# Fields of the run's model that published weights keep as they were published: the classifier's classes and the
# input size (`adapt` re-initialises the head and resizes the position embedding).
PUBLISHED_FIELDS = ('num_classes', 'image_size')


def load(source: str, model: str | None = None, model_kwargs: dict | None = None) -> tuple[dict, dict]:
  """(params, batch_stats) of `source`'s latest checkpoint, EMA weights when it has them; or of the published
  weights `source` names, read as `model` with the run's `model_kwargs` (but PUBLISHED_FIELDS)."""
  if source.startswith((PRETRAINED, 'hf-hub:')):
    from zoo import pretrained
    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k not in PUBLISHED_FIELDS}
    _, variables = pretrained.load_pretrained(source.removeprefix(PRETRAINED), model, **kwargs)
    logging.info('Initialising from the published weights %s', source)
    return variables['params'], variables['batch_stats']
  with checkpoint.manager(source, read_only=True) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise UserError(f'init_from={source!r} holds no checkpoint (want a train.py workdir or a zoo.convert output)')
    state = checkpoint.restore_state(mngr, step)
    model = checkpoint.restore_config(mngr, step).get('model')
  variables, averaged = ema.inference_variables(state)
  logging.info('Initialising from %s: %s step %d, %s weights', source, model, step, 'EMA' if averaged else 'raw')
  return variables['params'], variables['batch_stats']


def _names(keys) -> str:
  keys = sorted('/'.join(k) for k in keys)
  more = f' and {len(keys) - MAX_NAMES} more' if len(keys) > MAX_NAMES else ''
  return ', '.join(keys[:MAX_NAMES]) + more


def _is_pos_embed(key, source, target) -> bool:
  """A (1, h, w, C) position embedding whose grid alone differs."""
  return (key[-1] == 'pos_embed' and source.ndim == target.ndim == 4
          and (source.shape[0], source.shape[-1]) == (target.shape[0], target.shape[-1]))


def adapt(source, target, classifier: tuple[str, ...], collection: str = 'params'):
  """`source`'s values on the structure and shapes of `target`, the new model's initial values (rules in the module
  docstring); `classifier` names the model's classifier heads, `collection` the tree in errors."""
  src = flax.traverse_util.flatten_dict(source)
  tgt = flax.traverse_util.flatten_dict(target)
  missing, extra = set(tgt) - set(src), set(src) - set(tgt)
  if missing or extra:
    raise UserError(f'init_from: the checkpoint does not fit the model ({collection}): missing '
                    f'[{_names(missing)}], unexpected [{_names(extra)}]')
  out, reinitialised, misfit = {}, [], []
  for key, new in tgt.items():
    old = np.asarray(src[key])
    if old.shape == new.shape:
      out[key] = jnp.asarray(old, new.dtype)
    elif _is_pos_embed(key, old, new):
      out[key] = jax.image.resize(jnp.asarray(old, jnp.float32), new.shape, 'bicubic').astype(new.dtype)
      logging.info('init_from: %s resized from %s to %s (bicubic)', '/'.join(key), old.shape, new.shape)
    elif key[0] in classifier:
      out[key] = new
      reinitialised.append(key)
    else:
      misfit.append(f'{"/".join(key)} {old.shape} -> {new.shape}')
  if misfit:
    shown = ', '.join(misfit[:MAX_NAMES]) + (f' and {len(misfit) - MAX_NAMES} more' if len(misfit) > MAX_NAMES else '')
    raise UserError(f'init_from: {collection} of another shape in the checkpoint: {shown}')
  if reinitialised:
    logging.warning('init_from: %s differ in shape (another num_classes?): freshly initialised',
                    _names(reinitialised))
  return flax.traverse_util.unflatten_dict(out)
