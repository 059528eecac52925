"""zoo: a JAX/Flax image-model zoo. `zoo.create_model(name)` builds any registered model, `zoo.model_card(name)` states
its facts, `zoo.load_pretrained(name)` builds it with its published weights.

The names below are imported on first use, so that `import zoo.commands.launch` (a launcher that needs no jax) stays
quick; the registry imports the model families when a model is first looked up."""
import importlib

_FROM = {'create_model': 'zoo.registry', 'list_models': 'zoo.registry', 'model_fields': 'zoo.registry',
         'model_card': 'zoo.registry', 'ModelCard': 'zoo.registry', 'load_pretrained': 'zoo.pretrained'}
__all__ = ['create_model', 'list_models', 'model_fields', 'model_card', 'ModelCard', 'convert', 'load_pretrained']


def __getattr__(name: str):
  if name == 'convert':
    return importlib.import_module('zoo.convert')
  if name not in _FROM:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_FROM[name]), name)
  globals()[name] = value
  return value
