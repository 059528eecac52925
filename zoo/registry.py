"""The model registry: every family registers its variants by name, `create_model` builds them (as timm does)."""
import dataclasses
import difflib
from typing import Callable

import flax.linen as nn

from zoo.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, module_cls: type[nn.Module], **defaults) -> None:
  """Registers `name` as `module_cls(**defaults)`; users may override any dataclass field of the module."""
  if name in _MODELS:
    raise ValueError(f'model {name!r} is registered twice')
  fields = {f.name for f in dataclasses.fields(module_cls)} - {'parent', 'name'}
  unknown = set(defaults) - fields
  if unknown:
    raise TypeError(f'{module_cls.__name__} has no fields {sorted(unknown)}')
  _MODELS[name] = (module_cls, defaults)


def list_models() -> list[str]:
  return sorted(_MODELS)


def model_fields(name: str) -> list[str]:
  """The overrides that `create_model(name, ...)` accepts."""
  module_cls, _ = _lookup(name)
  return sorted({f.name for f in dataclasses.fields(module_cls)} - {'parent', 'name'})


def _lookup(name: str):
  if name not in _MODELS:
    close = difflib.get_close_matches(name, _MODELS, n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise UserError(f'Unknown model {name!r}.{hint} Available models: {", ".join(list_models())}')
  return _MODELS[name]


def create_model(name: str, **overrides) -> nn.Module:
  """Builds the registered model `name`; `overrides` replace fields of its default configuration."""
  module_cls, defaults = _lookup(name)
  valid = model_fields(name)
  bad = sorted(set(overrides) - set(valid))
  if bad:
    raise UserError(f'Model {name!r} does not accept {", ".join(bad)}. Valid overrides: {", ".join(valid)}')
  model = module_cls(**{**defaults, **overrides})
  check = getattr(model, 'check_config', None)
  if check is not None:
    check()
  return model
