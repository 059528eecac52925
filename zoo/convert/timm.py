"""timm state dicts -> zoo variables, for every family that registers how its variables are named in timm.

A family registers one function from a flax variable path to the timm key that holds it. The converter builds the
model's variable tree abstractly (`jax.eval_shape`, nothing is computed), so every variable must be found in the
file with its exact shape and every tensor of the file must be used: the weights fit, or one error lists all that
does not, in timm's names and layouts.
"""
import dataclasses
import functools
import re
from typing import Callable

import jax
import numpy as np
from flax import traverse_util

from zoo.errors import UserError
from zoo.registry import create_model, list_models, model_card

# File entries that carry no weights: BatchNorm's step counter.
IGNORED_SUFFIXES = ('.num_batches_tracked',)
# torch -> flax axis order of kernels, by rank: (out, in, [h, w]) -> ([h, w], in, out).
KERNEL_AXES = {2: (1, 0), 3: (2, 1, 0), 4: (2, 3, 1, 0), 5: (2, 3, 4, 1, 0)}
_SHOWN = 12  # keys listed per kind of mismatch; the count says how many more there are


class ConversionError(UserError):
  """The weights do not fit the model: the message names every missing, unexpected or misshapen key."""


@dataclasses.dataclass(frozen=True)
class TimmFamily:
  """How one zoo family names its variables in timm.

  `timm_key(path)` maps a flat flax path (collection first, e.g. ('params', 'head', 'kernel')) to a timm key.
  `guess(state_dict)`, optional, reads the model configuration off a file for the error message (never to build
  the model: a mismatch is reported, not silently fixed). `input_shape` is the NHWC batch used to trace init, or a
  function of the model giving it (where the variables depend on the input size, e.g. VOLO's position embedding).
  """
  timm_key: Callable[[tuple[str, ...]], str]
  guess: Callable[[dict], str | None] | None = None
  input_shape: tuple[int, ...] | Callable[..., tuple[int, ...]] = (1, 224, 224, 3)


TIMM_FAMILIES: dict[str, TimmFamily] = {}  # by the family name of the model cards


def register_timm(family_name: str, family: TimmFamily) -> None:
  """Makes the zoo models of `family_name` (their cards' `family`) that have a `timm_name` convertible from timm."""
  if family_name in TIMM_FAMILIES:
    raise ValueError(f'timm mapping {family_name!r} is registered twice')
  TIMM_FAMILIES[family_name] = family


def convertible(name: str) -> bool:
  """Whether timm weights convert to and from the zoo model `name`: a registered model whose card names timm's."""
  if name not in list_models():
    return False
  card = model_card(name)
  return card.timm_name is not None and card.family in TIMM_FAMILIES


def _family(name: str) -> TimmFamily:
  if not convertible(name):
    names = [m for m in list_models() if convertible(m)]
    raise UserError(f'no timm weights mapping for {name!r}; convertible models: {", ".join(names)}')
  return TIMM_FAMILIES[model_card(name).family]


def torch_layout(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
  """(the shape timm stores a variable in, the transpose that turns it into flax's) for the variable at `path`."""
  axes = KERNEL_AXES.get(len(shape)) if path[-1] == 'kernel' else None
  if axes is None:
    return tuple(shape), None
  torch_shape = [0] * len(shape)
  for flax_axis, torch_axis in enumerate(axes):
    torch_shape[torch_axis] = shape[flax_axis]
  return tuple(torch_shape), axes


def from_timm(name: str, state_dict: dict, **overrides) -> dict:
  """Variables ({'params', 'batch_stats'}, numpy) of `zoo.create_model(name, **overrides)` from a timm state dict.

  `state_dict` maps timm's names to arrays (see `zoo.convert.load_weights`); arrays are cast to the dtypes of the
  model's variables. Raises ConversionError, naming the keys, when the file does not fit the model exactly.
  """
  family = _family(name)
  model = create_model(name, **overrides)
  shape = family.input_shape(model) if callable(family.input_shape) else family.input_shape
  abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                            jax.ShapeDtypeStruct(shape, np.float32))
  plan = {}  # timm key -> (flax path, variable shape and dtype)
  for path, leaf in traverse_util.flatten_dict(abstract).items():
    key = family.timm_key(path)
    if key in plan:
      raise AssertionError(f'timm key {key} maps to both {plan[key][0]} and {path}')
    plan[key] = (path, leaf)

  missing = [k for k in plan if k not in state_dict]
  unexpected = [k for k in state_dict if k not in plan and not k.endswith(IGNORED_SUFFIXES)]
  wrong, flat = [], {}
  for key, (path, leaf) in plan.items():
    if key not in state_dict:
      continue
    value = np.asarray(state_dict[key])
    want, axes = torch_layout(path, leaf.shape)
    if value.shape != want:
      wrong.append(f'{key}: expected {want}, got {value.shape}')
    else:
      flat[path] = (value.transpose(axes) if axes else value).astype(leaf.dtype)
  if missing or unexpected or wrong:
    args = ', '.join(f'{k}={v!r}' for k, v in overrides.items())
    raise ConversionError(_report(f'{name}({args})', missing, unexpected, wrong, family, state_dict))
  return traverse_util.unflatten_dict(flat)


def to_timm(name: str, variables: dict) -> dict[str, np.ndarray]:
  """The inverse of `from_timm`: zoo variables ({'params', 'batch_stats'}) of `name` as a timm state dict (timm's
  names, torch's layouts), so that weights trained here load into timm."""
  family = _family(name)
  out = {}
  for path, value in traverse_util.flatten_dict(variables).items():
    value = np.asarray(value)
    _, axes = torch_layout(path, value.shape)
    out[family.timm_key(path)] = np.ascontiguousarray(value.transpose(np.argsort(axes)) if axes else value)
  return out


def _report(model: str, missing, unexpected, wrong, family: TimmFamily, state_dict) -> str:
  counts = [f'{len(v)} {what}' for v, what in ((missing, 'missing'), (unexpected, 'unexpected'),
                                                (wrong, 'with the wrong shape')) if v]
  lines = [f'the weights do not fit {model}: {", ".join(counts)} (timm names and layouts)']
  for items, what, sep in ((_grouped(missing), 'missing', ', '), (_grouped(unexpected), 'unexpected', ', '),
                           (sorted(wrong, key=_natural), 'wrong shape', '; ')):
    if items:
      more = f' ... and {len(items) - _SHOWN} more' if len(items) > _SHOWN else ''
      lines.append(f'  {what}: {sep.join(items[:_SHOWN])}{more}')
  guess = None
  if family.guess is not None:
    try:
      guess = family.guess(state_dict)
    except (KeyError, IndexError, ValueError, AttributeError):
      pass
  if guess:
    lines.append(f'  the file looks like {guess}')
  return '\n'.join(lines)


def _grouped(keys) -> list[str]:
  """Keys with their module in common, written once: ['a.b.bias', 'a.b.weight'] -> ['a.b.{bias,weight}']."""
  modules = {}
  for key in sorted(keys, key=_natural):
    module, _, leaf = key.rpartition('.')
    modules.setdefault(module, []).append(leaf)
  out = []
  for module, leaves in modules.items():
    if module and len(leaves) > 1:
      out.append(f'{module}.{{{",".join(leaves)}}}')
    else:
      out.extend(f'{module}.{leaf}' if module else leaf for leaf in leaves)
  return out


def _natural(key: str):
  """Sort key that puts layer3.10 after layer3.9."""
  return [(0, int(t), '') if t.isdigit() else (1, 0, t) for t in re.split(r'(\d+)', key)]
