"""The model registry: every family registers its variants by name with a card of their facts; `create_model`
builds them (as timm does) and `model_card` tells what the rest of the zoo needs to know about one."""
import dataclasses
import difflib

import flax.linen as nn

from zoo.errors import UserError

# ImageNet's channel mean and standard deviation, of images scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelCard:
  """The facts of a registered model that benchmark, export, fine-tuning and conversion read instead of guessing
  them from its name.

  family: the name of its family ('resnetrs', 'volo', 'denoisers', ...), under which zoo.convert keeps the family's
    mapping of timm's variable names.
  task: the zoo task that trains it (zoo/tasks).
  input_size: the side of the square input its recipe trains on and its released weights are evaluated at (a fully
    convolutional model takes other sizes too).
  crop_pct: the centre-crop fraction of the released weights' evaluation (resize to input_size / crop_pct, crop);
    None where the input is not resized and cropped.
  interpolation: the resize filter of that evaluation (timm's data config; the zoo's input resizes bilinearly,
    zoo/data/transforms.py); None likewise.
  mean, std: per channel, of images scaled to [0, 1], that the input is normalised by; None where it is not.
  recipe: the config that trains it, as passed to --config (e.g. 'configs/resnet_rs.py:50-160'); a classifier's
    argument ends with '-<input size>', which zoo-benchmark replaces to measure it at another size.
  classifier: the top-level params of its classifier heads, whose shape follows num_classes; () for no classifier.
  timm_name: the timm model (and pretrained tag) whose weights zoo.convert maps onto it; None where timm has none.
  """
  family: str
  task: str
  input_size: int
  recipe: str
  crop_pct: float | None = None
  interpolation: str | None = None
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None
  classifier: tuple[str, ...] = ()
  timm_name: str | None = None


def imagenet_card(family: str, input_size: int, crop_pct: float, recipe: str, classifier: tuple[str, ...],
                  timm_name: str | None) -> ModelCard:
  """The card of an ImageNet classifier evaluated as timm evaluates its weights: bicubic resize, ImageNet mean/std."""
  return ModelCard(family=family, task='classification', input_size=input_size, recipe=recipe, crop_pct=crop_pct,
                   interpolation='bicubic', mean=IMAGENET_MEAN, std=IMAGENET_STD, classifier=classifier,
                   timm_name=timm_name)


_MODELS: dict[str, tuple[type[nn.Module], dict, ModelCard]] = {}


def register_model(name: str, module_cls: type[nn.Module], card: ModelCard, **defaults) -> None:
  """Registers `name` as `module_cls(**defaults)` with its `card`; users may override any dataclass field of the
  module."""
  if name in _MODELS:
    raise ValueError(f'model {name!r} is registered twice')
  fields = {f.name for f in dataclasses.fields(module_cls)} - {'parent', 'name'}
  unknown = set(defaults) - fields
  if unknown:
    raise TypeError(f'{module_cls.__name__} has no fields {sorted(unknown)}')
  _MODELS[name] = (module_cls, defaults, card)


def _registered() -> dict:
  """The registry, with every family of zoo.models registered (they register on import)."""
  import zoo.models  # noqa: F401
  return _MODELS


def list_models() -> list[str]:
  return sorted(_registered())


def model_fields(name: str) -> list[str]:
  """The overrides that `create_model(name, ...)` accepts."""
  module_cls, _, _ = _lookup(name)
  return sorted({f.name for f in dataclasses.fields(module_cls)} - {'parent', 'name'})


def _lookup(name: str):
  if name not in _registered():
    close = difflib.get_close_matches(name, _MODELS, n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise UserError(f'Unknown model {name!r}.{hint} Available models: {", ".join(list_models())}')
  return _MODELS[name]


def create_model(name: str, **overrides) -> nn.Module:
  """Builds the registered model `name`; `overrides` replace fields of its default configuration."""
  module_cls, defaults, _ = _lookup(name)
  valid = model_fields(name)
  bad = sorted(set(overrides) - set(valid))
  if bad:
    raise UserError(f'Model {name!r} does not accept {", ".join(bad)}. Valid overrides: {", ".join(valid)}')
  model = module_cls(**{**defaults, **overrides})
  check = getattr(model, 'check_config', None)
  if check is not None:
    check()
  return model


def model_card(name: str) -> ModelCard:
  """The card of the registered model `name` (an unknown name is a UserError naming close matches)."""
  return _lookup(name)[2]


def held_classes(name: str, variables: dict) -> int | None:
  """The outputs of the classifier head (the card's first) in `variables` of model `name`; None for a model without
  one, or variables that lack it."""
  heads = model_card(name).classifier
  if not heads or heads[0] not in variables['params']:
    return None
  return int(variables['params'][heads[0]]['bias'].shape[-1])
